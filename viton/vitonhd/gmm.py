"""Stage 2 network: the geometric matching module (GMM) that predicts a thin-plate-spline warp.

State-dict layout (fixed by the published ``gmm_final.pth``): ``extractionA.model.*`` and
``extractionB.model.*`` (conv, ReLU, BatchNorm triples), ``regression.conv.*`` (conv, BatchNorm,
ReLU triples) and ``regression.linear``. The TPS tensors are rebuilt from the options and kept as
non-persistent buffers, so they never appear in the state_dict.

Convention: grids are in ``grid_sample`` coordinates, (x, y) in [-1, 1], ``align_corners=False``.
The TPS control points and the target grid both span [-0.9, 0.9] (as in the official code), so a
zero ``theta`` samples a slightly zoomed cloth rather than the identity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TPS_EXTENT = 0.9            # control points and target grid span [-TPS_EXTENT, TPS_EXTENT]
FEATURE_WIDTH = 64          # first conv width of the feature extractors; doubles up to 512
FEATURE_LAYERS = 4          # stride-2 convs in each extractor (stage size / 16 at the output)
_BASIS_CHUNK_ROWS = 1 << 17  # target points per chunk while precomputing the TPS basis (bounds peak memory)


class FeatureExtraction(nn.Module):
    """(B, C_in, H, W) -> (B, 512, H/16, W/16) features; each conv is followed by ReLU then BatchNorm."""

    def __init__(self, in_ch: int):
        super().__init__()
        layers: list[nn.Module] = []
        prev, width = in_ch, FEATURE_WIDTH
        for _ in range(FEATURE_LAYERS):
            layers += [nn.Conv2d(prev, width, kernel_size=4, stride=2, padding=1), nn.ReLU(), nn.BatchNorm2d(width)]
            prev, width = width, min(width * 2, 512)
        layers += [nn.Conv2d(prev, 512, kernel_size=3, padding=1), nn.ReLU(), nn.BatchNorm2d(512)]
        layers += [nn.Conv2d(512, 512, kernel_size=3, padding=1), nn.ReLU()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class FeatureRegression(nn.Module):
    """Correlation volume (B, hA*wA, h, w) -> TPS offsets (B, 2N) in (-1, 1) (tanh)."""

    def __init__(self, in_ch: int, spatial_cells: int, out_size: int):
        super().__init__()
        triples: list[nn.Module] = []
        for cin, cout, k, s in ((in_ch, 512, 4, 2), (512, 256, 4, 2), (256, 128, 3, 1), (128, 64, 3, 1)):
            triples += [nn.Conv2d(cin, cout, kernel_size=k, stride=s, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
        self.conv = nn.Sequential(*triples)
        self.linear = nn.Linear(64 * spatial_cells, out_size)

    def forward(self, corr: torch.Tensor) -> torch.Tensor:
        feats = self.conv(corr)
        return torch.tanh(self.linear(feats.flatten(1)))


def feature_correlation(feat_a: torch.Tensor, feat_b: torch.Tensor) -> torch.Tensor:
    """Dot products between every position of A and every position of B.

    Args:
        feat_a, feat_b: (B, C, h, w) float.
    Returns:
        (B, w*h, h, w): channel ``x_a * h + y_a`` (A's position, width-major) at B's position (y_b, x_b).
    """
    b, c, h, w = feat_a.shape
    a_rows = feat_a.transpose(1, 3).reshape(b, w * h, c)          # (B, w*h, C), row = x*h + y
    corr = torch.bmm(a_rows, feat_b.reshape(b, c, h * w))          # (B, w*h, h*w)
    return corr.view(b, w * h, h, w)


def _tps_radial(d2: torch.Tensor) -> torch.Tensor:
    """TPS kernel r^2 log r^2 on squared distances, 0 where the distance is 0."""
    return d2 * torch.log(torch.where(d2 == 0, torch.ones_like(d2), d2))


class TpsGrid(nn.Module):
    """Evaluates a thin-plate spline, fitted to displaced control points, on a fixed target grid.

    Control point k (of N = n*n) sits at (x, y) = (c[k // n], c[k % n]) with c = linspace(-0.9, 0.9, n).
    Since the TPS solve is linear in the displaced points Q, the grid is ``basis @ Q`` with a
    precomputed (H*W, N) basis (float64 solve, stored float32).
    """

    control_points: torch.Tensor
    basis: torch.Tensor

    def __init__(self, grid_size: int, out_size: tuple[int, int]):
        super().__init__()
        self.num_points = grid_size * grid_size
        self.out_size = out_size
        coords = torch.linspace(-TPS_EXTENT, TPS_EXTENT, grid_size, dtype=torch.float64)
        ctrl = torch.stack((coords.repeat_interleave(grid_size), coords.repeat(grid_size)), dim=1)  # (N, 2) x, y
        n = self.num_points
        system = torch.zeros(n + 3, n + 3, dtype=torch.float64)
        system[:n, :n] = _tps_radial(torch.cdist(ctrl, ctrl).square())
        affine = torch.cat((torch.ones(n, 1, dtype=torch.float64), ctrl), dim=1)  # (N, 3): 1, x, y
        system[:n, n:] = affine
        system[n:, :n] = affine.T
        solve = torch.linalg.inv(system)[:, :n]                                    # (N+3, N)

        h, w = out_size
        gx = torch.linspace(-TPS_EXTENT, TPS_EXTENT, w, dtype=torch.float64)
        gy = torch.linspace(-TPS_EXTENT, TPS_EXTENT, h, dtype=torch.float64)
        points = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1).reshape(-1, 2)  # (H*W, 2) row-major
        basis = torch.empty(points.shape[0], n, dtype=torch.float32)
        for start in range(0, points.shape[0], _BASIS_CHUNK_ROWS):
            p = points[start:start + _BASIS_CHUNK_ROWS]
            kernel = torch.cat((_tps_radial(torch.cdist(p, ctrl).square()), torch.ones(p.shape[0], 1,
                                dtype=torch.float64), p), dim=1)                   # (rows, N+3)
            basis[start:start + p.shape[0]] = (kernel @ solve).float()
        self.register_buffer("control_points", ctrl.float(), persistent=False)
        self.register_buffer("basis", basis, persistent=False)

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        """theta: (B, 2N) offsets, X offsets first then Y -> grid (B, H, W, 2) (x, y) for grid_sample."""
        n = self.num_points
        targets = torch.stack((theta[:, :n], theta[:, n:]), dim=-1) + self.control_points  # (B, N, 2)
        grid = torch.matmul(self.basis, targets)                                            # (B, H*W, 2)
        return grid.view(theta.shape[0], *self.out_size, 2)


class GMM(nn.Module):
    """Geometric matching module.

    Inputs at the stage size (H, W) = full / 4 (256 x 192):
        input_a: (B, 7, H, W) person condition: upper-cloth parse channel (1), pose (3), agnostic image (3).
        input_b: (B, 3, H, W) cloth in [-1, 1].
    Returns:
        theta: (B, 2 * grid_size^2) in (-1, 1), control-point offsets (X block then Y block).
        grid: (B, full_h, full_w, 2) sampling grid, (x, y), normalised coordinates, align_corners=False.
    """

    def __init__(self, input_a_nc: int = 7, input_b_nc: int = 3, grid_size: int = 5,
                 full_size: tuple[int, int] = (1024, 768)):
        super().__init__()
        full_h, full_w = full_size
        self.extractionA = FeatureExtraction(input_a_nc)
        self.extractionB = FeatureExtraction(input_b_nc)
        # Correlation has one channel per feature cell: (full/4/16)^2 cells = (full/64)^2.
        self.regression = FeatureRegression(in_ch=(full_h // 64) * (full_w // 64),
                                            spatial_cells=(full_h // 256) * (full_w // 256),
                                            out_size=2 * grid_size * grid_size)
        self.tps = TpsGrid(grid_size, full_size)

    def forward(self, input_a: torch.Tensor, input_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat_a = F.normalize(self.extractionA(input_a), dim=1)
        feat_b = F.normalize(self.extractionB(input_b), dim=1)
        theta = self.regression(feature_correlation(feat_a, feat_b))
        return theta, self.tps(theta)
