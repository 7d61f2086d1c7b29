"""OpenCV versions of the weight-free image stages, for the local CPU fast path.

mediapipe's CPU graph does these warps with OpenCV (ImageToTensor on the uint8 photo; the segmentation
back-projection with ``cv::warpAffine``). The portable torch stages in node1.pose.stages reproduce that
arithmetic with tensor ops so they run on any device and through gvirtus; on the local CPU one OpenCV call
does the same work (768x1024 photo, 2 threads: letterbox 4-8 -> 0.45 ms, crop 6-8 -> 0.6 ms, mask warp
4-6 -> 0.85 ms).

Same interfaces (shapes, dtypes, ranges) as the stages they replace. The photo samplings are bit-identical
to the portable stages: ``cv2.remap`` is given the fixed-point maps the portable code computes (OpenCV
>= 4.11's own warpPerspective/warpAffine compute coordinates and weights in float and differ from
mediapipe's OpenCV by up to 2 grey levels on ~3% of pixels, enough to move landmark visibilities by 0.02).
The mask warp uses cv2.warpAffine on the float probabilities: up to one grey level from the portable
grid_sample on ~0.05% of the mask pixels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch import nn

from node1.pose.geometry import INTER_TAB, crop_coords
from node1.pose.stages import POSE_LANDMARK_SIZE

_INTER_BITS = 5  # log2(INTER_TAB)
_MAX_FIXED = 32768 * INTER_TAB  # int16 maps hold integer pixel coordinates in [-32768, 32767]


def sample_u8_cv2(image: torch.Tensor, px: torch.Tensor, py: torch.Tensor, border: int) -> np.ndarray:
    """node1.pose.geometry.sample_u8 as one ``cv2.remap`` with fixed-point maps: bit-identical to it (same
    1/32 px coordinates, OpenCV's integer bilinear weights and rounding), about 10x faster on the CPU.

    Args:
        image: (H, W, 3) uint8 CPU tensor; px, py: (N, M) float64 source coordinates (pixel-index convention);
        border: cv2.BORDER_CONSTANT (zeros) or cv2.BORDER_REPLICATE.
    Returns:
        (N, M, 3) uint8.
    """
    xq = torch.round(px * INTER_TAB).to(torch.int32)
    yq = torch.round(py * INTER_TAB).to(torch.int32)
    if int(xq.abs().max()) >= _MAX_FIXED or int(yq.abs().max()) >= _MAX_FIXED:  # outside int16 maps: never for
        raise ValueError(f"sampling coordinates beyond +-{_MAX_FIXED // INTER_TAB} px")  # photos the boundary accepts
    xy = torch.stack([xq >> _INTER_BITS, yq >> _INTER_BITS], dim=-1).to(torch.int16).numpy()
    alpha = ((yq & (INTER_TAB - 1)) * INTER_TAB + (xq & (INTER_TAB - 1))).to(torch.int16).numpy().view(np.uint16)
    return cv2.remap(image.numpy(), xy, alpha, cv2.INTER_LINEAR, borderMode=border, borderValue=(0, 0, 0))


def _to_input(pixels: np.ndarray, lo: float, hi: float) -> torch.Tensor:
    """(N, N, 3) uint8 -> (1, 3, N, N) float32 in [lo, hi], values ``u8 * (hi - lo) / 255 + lo``."""
    x = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0).float()
    return (x * ((hi - lo) / 255.0) + lo).contiguous()


class PrepareImageCpu(nn.Module):
    """The local photo is already where the stages read it: no device copy (the caller never mutates it)."""

    def forward(self, image_u8: torch.Tensor) -> torch.Tensor:
        return image_u8


class FullImageInputCpu(nn.Module):
    """node1.pose.stages.FullImageInput with cv2: image (H, W, 3) uint8 -> (1, 3, N, N) float32 in [lo, hi]."""

    def __init__(self, size: int, lo: float, hi: float, keep_aspect: bool = True) -> None:
        super().__init__()
        self.size, self.lo, self.hi, self.keep_aspect = size, lo, hi, keep_aspect

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[0], image.shape[1]
        sx, sy = (float(max(w, h)),) * 2 if self.keep_aspect else (float(w), float(h))
        px, py = crop_coords(w / 2, h / 2, sx, sy, 0.0, self.size, image.device)
        return _to_input(sample_u8_cv2(image, px, py, cv2.BORDER_CONSTANT), self.lo, self.hi)


class PoseCropCpu(nn.Module):
    """node1.pose.stages.PoseCrop with cv2: (image, roi) -> (1, 3, 256, 256) float32 in [0, 1], BORDER_REPLICATE."""

    def forward(self, image: torch.Tensor, roi: torch.Tensor) -> torch.Tensor:
        r = roi.double()
        px, py = crop_coords(r[0], r[1], r[2], r[2], r[3], POSE_LANDMARK_SIZE, image.device)
        pixels = torch.from_numpy(sample_u8_cv2(image, px, py, cv2.BORDER_REPLICATE))
        return (pixels.permute(2, 0, 1).unsqueeze(0).float() / 255.0).contiguous()  # as PoseCrop, bit for bit


class PoseMaskCpu(nn.Module):
    """node1.pose.stages.PoseMask with cv2.warpAffine (what mediapipe's CPU graph calls): image pixel P samples
    m = N R(-theta)(P - C) / side + N/2 of the crop probability, bilinear, BORDER_ZERO.

    forward(image, seg (1, 1, N, N) float32 in [0, 1], roi, *passthrough) -> (*passthrough, mask (H, W) uint8).
    """

    def forward(self, image: torch.Tensor, seg: torch.Tensor, roi: torch.Tensor,
                *passthrough: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h, w = image.shape[0], image.shape[1]
        cx, cy, side, theta = (float(v) for v in roi)
        n = seg.shape[-1]
        q, c, s = n / side, math.cos(theta), math.sin(theta)
        # m = q R(-t) (P - C) + n/2, R(-t) = [[c, s], [-s, c]]
        m = np.array([[q * c, q * s, n / 2 - q * (c * cx + s * cy)],
                      [-q * s, q * c, n / 2 - q * (-s * cx + c * cy)]])
        out = cv2.warpAffine(seg[0, 0].numpy(), m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        mask = cv2.convertScaleAbs(out, alpha=255.0)  # saturating round to nearest, values in [0, 255]
        return (*passthrough, torch.from_numpy(mask))
