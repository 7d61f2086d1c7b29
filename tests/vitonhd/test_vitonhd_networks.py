"""State-dict compatibility with the official checkpoints, and per-network forward checks."""

from __future__ import annotations

from typing import Any, cast

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from viton.vitonhd import GMM, NETWORK_NAMES, state_dict_signature
from viton.vitonhd.gmm import TpsGrid, feature_correlation


def manifest_signature(manifest: dict[str, Any], name: str) -> list[tuple[str, tuple[int, ...], str]]:
    entry = manifest[name]
    return [(k, tuple(shape), entry["dtypes"][k].removeprefix("torch.")) for k, shape in entry["params"]]


@pytest.mark.parametrize("name", NETWORK_NAMES)
def test_state_dict_equals_manifest(nets: dict[str, nn.Module], manifest: dict[str, Any], name: str) -> None:
    ours = state_dict_signature(nets[name])
    theirs = manifest_signature(manifest, name)
    assert len(ours) == manifest[name]["num_state_dict_keys"]
    # Same keys in the same order, same shapes, same dtypes.
    assert ours == theirs
    assert sum(p.numel() for p in nets[name].parameters()) == manifest[name]["total_params"]
    buffers = {k for k, _ in nets[name].named_buffers() if k in nets[name].state_dict()}
    assert buffers == set(manifest[name]["buffer_keys"])


def test_alias_uses_legacy_spectral_norm_metadata(nets: dict[str, nn.Module], manifest: dict[str, Any]) -> None:
    state = nets["alias"].state_dict()
    metadata = state._metadata  # type: ignore[attr-defined]
    versions = {meta["spectral_norm"]["weight.version"] for meta in metadata.values() if "spectral_norm" in meta}
    assert versions == set(manifest["alias"]["spectral_norm_metadata_versions"])
    sn_modules = sorted(k.removesuffix(".weight_orig") for k in state if k.endswith(".weight_orig"))
    assert sn_modules == sorted(manifest["alias"]["spectral_norm_modules"])
    assert not any(k.endswith(".weight") and k.removesuffix(".weight") in sn_modules for k in state)


def test_gmm_tps_buffers_are_rebuilt_not_saved(nets: dict[str, nn.Module]) -> None:
    gmm = nets["gmm"]
    state_keys = set(gmm.state_dict())
    tps_buffers = {k for k, _ in gmm.named_buffers() if k.startswith("tps.")}
    assert tps_buffers == {"tps.control_points", "tps.basis"}
    assert not tps_buffers & state_keys
    assert gmm.state_dict()["regression.conv.1.num_batches_tracked"].dtype == torch.int64


def test_seg_forward_shape(nets: dict[str, nn.Module]) -> None:
    x = torch.randn(1, 21, 256, 192)
    with torch.inference_mode():
        out = nets["seg"](x)
    assert out.shape == (1, 13, 256, 192)
    assert float(out.min()) > 0.0 and float(out.max()) < 1.0


@pytest.mark.parametrize("batch", [1, 2])
def test_gmm_forward_shapes(nets: dict[str, nn.Module], batch: int) -> None:
    gmm = cast(GMM, nets["gmm"])
    a, b = torch.randn(batch, 7, 256, 192), torch.randn(batch, 3, 256, 192)
    with torch.inference_mode():
        feat_a = F.normalize(gmm.extractionA(a), dim=1)
        feat_b = F.normalize(gmm.extractionB(b), dim=1)
        corr = feature_correlation(feat_a, feat_b)
        theta, grid = gmm(a, b)
    assert feat_a.shape == (batch, 512, 16, 12)
    assert corr.shape == (batch, 192, 16, 12)
    assert theta.shape == (batch, 50) and float(theta.abs().max()) < 1.0
    assert grid.shape == (batch, 1024, 768, 2)
    assert torch.isfinite(grid).all()


def test_correlation_channel_is_a_position_in_width_major_order() -> None:
    h, w = 4, 3
    feat_a = torch.zeros(1, h * w, h, w)
    feat_b = torch.zeros(1, h * w, h, w)
    # A's feature at (y, x) is the unit vector e_{y*w+x}; B's likewise: corr is 1 exactly where positions match.
    for y in range(h):
        for x in range(w):
            feat_a[0, y * w + x, y, x] = 1.0
            feat_b[0, y * w + x, y, x] = 1.0
    corr = feature_correlation(feat_a, feat_b)
    for y in range(h):
        for x in range(w):
            channel = x * h + y
            assert corr[0, channel, y, x] == 1.0
            assert corr[0, channel].sum() == 1.0


def _naive_tps(theta: torch.Tensor, grid_size: int, out_size: tuple[int, int]) -> torch.Tensor:
    """Direct thin-plate spline in float64, written from the textbook formula (test oracle)."""
    n = grid_size * grid_size
    c = torch.linspace(-0.9, 0.9, grid_size, dtype=torch.float64)
    px = torch.tensor([float(c[k // grid_size]) for k in range(n)], dtype=torch.float64)
    py = torch.tensor([float(c[k % grid_size]) for k in range(n)], dtype=torch.float64)

    def u(d2: torch.Tensor) -> torch.Tensor:
        return torch.where(d2 > 0, d2 * torch.log(d2.clamp_min(1e-300)), torch.zeros_like(d2))

    big_k = u((px[:, None] - px[None]) ** 2 + (py[:, None] - py[None]) ** 2)
    p = torch.stack((torch.ones(n, dtype=torch.float64), px, py), dim=1)
    system = torch.zeros(n + 3, n + 3, dtype=torch.float64)
    system[:n, :n], system[:n, n:], system[n:, :n] = big_k, p, p.T
    h, w = out_size
    gy, gx = torch.meshgrid(torch.linspace(-0.9, 0.9, h, dtype=torch.float64),
                            torch.linspace(-0.9, 0.9, w, dtype=torch.float64), indexing="ij")
    out = torch.empty(h, w, 2, dtype=torch.float64)
    for dim, base in ((0, px), (1, py)):
        rhs = torch.cat((base + theta[dim * n:(dim + 1) * n].double(), torch.zeros(3, dtype=torch.float64)))
        coef = torch.linalg.solve(system, rhs)
        radial = u((gx[..., None] - px) ** 2 + (gy[..., None] - py) ** 2) @ coef[:n]
        out[..., dim] = coef[n] + coef[n + 1] * gx + coef[n + 2] * gy + radial
    return out


def test_tps_grid_matches_direct_formula() -> None:
    torch.manual_seed(0)
    tps = TpsGrid(5, (64, 48))
    theta = torch.rand(2, 50) * 0.4 - 0.2
    grid = tps(theta)
    assert grid.shape == (2, 64, 48, 2)
    for b in range(2):
        torch.testing.assert_close(grid[b].double(), _naive_tps(theta[b], 5, (64, 48)), atol=2e-5, rtol=0)


def test_tps_zero_theta_spans_the_inner_ninety_percent(nets: dict[str, nn.Module]) -> None:
    grid = cast(GMM, nets["gmm"]).tps(torch.zeros(1, 50))
    assert grid.shape == (1, 1024, 768, 2)
    torch.testing.assert_close(grid[0, 0, 0], torch.tensor([-0.9, -0.9]), atol=1e-5, rtol=0)
    torch.testing.assert_close(grid[0, -1, -1], torch.tensor([0.9, 0.9]), atol=1e-5, rtol=0)
    torch.testing.assert_close(grid[0, 0, -1], torch.tensor([0.9, -0.9]), atol=1e-5, rtol=0)
