"""Kernels the backend offers beyond aten: the role CUDA libraries such as NPP play for GVirtuS.

Each is a torch custom op in the ``gvirtus`` namespace, so a module that calls it runs locally on any
device and is captured by make_fx as ONE graph node that the backend runs with its own implementation
(allowed by gvirtus.allowlist like an aten op). Two implementations each:

- CPU: one OpenCV call (what mediapipe's CPU graph itself calls), ~10x faster than the tensor-op version;
- every other device (CUDA, ...): the same arithmetic as a handful of tensor ops.

    remap_bilinear_u8(image (H, W, C) uint8, xq (N, M) int32, yq (N, M) int32, border) -> (N, M, C) uint8
        OpenCV's uint8 INTER_LINEAR remap at fixed-point coordinates (1/32 px: x = xq / 32): integer
        bilinear weights, rounding ``(sum + 2^14) >> 15``. Both implementations are bit-identical.
        border: BORDER_ZERO (0) or BORDER_REPLICATE (1).
    warp_affine_f32(src (n, m) float32, matrix (2, 3) float64, height, width) -> (height, width) float32
        dst(y, x) = bilinear sample of src at matrix @ (x, y, 1) (pixel-index coords, no half-pixel
        offset), zero outside. CPU: cv2.warpAffine (coordinates on OpenCV's 1/32 px grid); elsewhere
        grid_sample at exact coordinates: the two differ by < 1/32 of a source pixel step.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

INTER_BITS = 5
INTER_TAB = 1 << INTER_BITS      # OpenCV's INTER_TAB_SIZE: 32 sub-pixel positions per pixel
BORDER_ZERO, BORDER_REPLICATE = 0, 1
_CV_BORDER = {BORDER_ZERO: cv2.BORDER_CONSTANT, BORDER_REPLICATE: cv2.BORDER_REPLICATE}
_INT16_LIMIT = 32767             # cv2.remap's fixed-point maps hold integer coordinates as int16


def _check_remap(image: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor, border: int) -> None:
    if image.dtype != torch.uint8 or image.dim() != 3:
        raise ValueError(f"remap_bilinear_u8: image must be (H, W, C) uint8, got {image.dtype} {tuple(image.shape)}")
    if xq.dtype != torch.int32 or yq.dtype != torch.int32 or xq.shape != yq.shape or xq.dim() != 2:
        raise ValueError(f"remap_bilinear_u8: xq, yq must be equal-shape (N, M) int32, got {xq.dtype} "
                         f"{tuple(xq.shape)} and {yq.dtype} {tuple(yq.shape)}")
    if border not in _CV_BORDER:
        raise ValueError(f"remap_bilinear_u8: border must be {BORDER_ZERO} (zero) or {BORDER_REPLICATE} "
                         f"(replicate), got {border}")


def _remap_tensor_ops(image: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor, border: int) -> torch.Tensor:
    """image (H, W, C) uint8, xq / yq (K,) int32 -> (K, C) uint8."""
    h, w, ch = image.shape
    xq, yq = xq.reshape(1, -1), yq.reshape(1, -1)
    x0, y0 = xq >> INTER_BITS, yq >> INTER_BITS          # floor division by 32
    fx, fy = (xq & (INTER_TAB - 1)).float(), (yq & (INTER_TAB - 1)).float()
    # the 2x2 neighbourhood as one (4, N*M) batch: (x0, y0), (x0+1, y0), (x0, y0+1), (x0+1, y0+1)
    xs = x0 + torch.tensor([[0], [1], [0], [1]], device=image.device, dtype=x0.dtype)
    ys = y0 + torch.tensor([[0], [0], [1], [1]], device=image.device, dtype=y0.dtype)
    xc, yc = xs.clamp(0, w - 1), ys.clamp(0, h - 1)
    wx = torch.cat([INTER_TAB - fx, fx, INTER_TAB - fx, fx])
    wy = torch.cat([INTER_TAB - fy, INTER_TAB - fy, fy, fy])
    wt = wx * wy  # integers <= 1024: exact in float32, as are the sums below
    if border == BORDER_ZERO:
        wt = wt * ((xs == xc) & (ys == yc)).float()
    flat = (yc.long() * w + xc.long()).reshape(-1)
    vals = torch.index_select(image.reshape(h * w, ch), 0, flat).reshape(4, -1, ch).float()
    total = (vals * wt[:, :, None]).sum(dim=0)
    out = torch.floor((total + INTER_TAB * INTER_TAB / 2) / (INTER_TAB * INTER_TAB))
    return out.to(torch.uint8)  # (K, C)


@torch.library.custom_op("gvirtus::remap_bilinear_u8", mutates_args=())
def remap_bilinear_u8(image: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor, border: int) -> torch.Tensor:
    """See the module docstring. Any device: the tensor-op implementation."""
    _check_remap(image, xq, yq, border)
    n, m = xq.shape
    out = _remap_tensor_ops(image, xq.reshape(-1), yq.reshape(-1), border)
    return out.reshape(n, m, image.shape[2])


@remap_bilinear_u8.register_kernel("cpu")
def _remap_cpu(image: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor, border: int) -> torch.Tensor:
    _check_remap(image, xq, yq, border)
    if xq.numel() and max(int(xq.abs().max()), int(yq.abs().max())) >> INTER_BITS >= _INT16_LIMIT:
        n, m = xq.shape  # beyond cv2's int16 maps (never for photos the boundary accepts): tensor ops
        return _remap_tensor_ops(image, xq.reshape(-1), yq.reshape(-1), border).reshape(n, m, image.shape[2])
    xy = torch.stack([xq >> INTER_BITS, yq >> INTER_BITS], dim=-1).to(torch.int16).numpy()
    alpha = ((yq & (INTER_TAB - 1)) * INTER_TAB + (xq & (INTER_TAB - 1))).to(torch.int16).numpy().view(np.uint16)
    out = cv2.remap(np.ascontiguousarray(image.numpy()), xy, alpha, cv2.INTER_LINEAR,
                    borderMode=_CV_BORDER[border], borderValue=(0, 0, 0, 0))
    return torch.from_numpy(out.reshape(*xq.shape, image.shape[2]))


@remap_bilinear_u8.register_fake
def _remap_fake(image: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor, border: int) -> torch.Tensor:
    return image.new_empty((*xq.shape, image.shape[2]))


def _check_warp(src: torch.Tensor, matrix: torch.Tensor, height: int, width: int) -> None:
    if src.dtype != torch.float32 or src.dim() != 2:
        raise ValueError(f"warp_affine_f32: src must be (n, m) float32, got {src.dtype} {tuple(src.shape)}")
    if matrix.shape != (2, 3) or matrix.dtype != torch.float64:
        raise ValueError(f"warp_affine_f32: matrix must be (2, 3) float64, got {matrix.dtype} {tuple(matrix.shape)}")
    if height < 1 or width < 1:
        raise ValueError(f"warp_affine_f32: output size must be positive, got {height}x{width}")


def _warp_tensor_ops(src: torch.Tensor, matrix: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """grid_sample at the exact coordinates ``matrix @ (x, y, 1)``: (n, m) float32 -> (height, width)."""
    n, m = src.shape
    mf = matrix.to(torch.float32)
    # normalised grid g = (2 p + 1) / size - 1 for source pixel p = M (x, y, 1): per-column + per-row terms
    xs = torch.arange(width, device=src.device, dtype=torch.float32)
    ys = torch.arange(height, device=src.device, dtype=torch.float32)
    scale = torch.tensor([2.0 / m, 2.0 / n], device=src.device)
    cols = torch.stack([mf[0, 0] * xs, mf[1, 0] * xs], dim=-1) * scale
    rows = torch.stack([mf[0, 1] * ys + mf[0, 2], mf[1, 1] * ys + mf[1, 2]], dim=-1) * scale + (scale / 2 - 1)
    grid = (cols[None, :, :] + rows[:, None, :])[None]
    return F.grid_sample(src[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0]


@torch.library.custom_op("gvirtus::warp_affine_f32", mutates_args=())
def warp_affine_f32(src: torch.Tensor, matrix: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """See the module docstring. Any device: grid_sample at exact coordinates."""
    _check_warp(src, matrix, height, width)
    return _warp_tensor_ops(src, matrix, height, width)


@warp_affine_f32.register_kernel("cpu")
def _warp_cpu(src: torch.Tensor, matrix: torch.Tensor, height: int, width: int) -> torch.Tensor:
    _check_warp(src, matrix, height, width)
    out = cv2.warpAffine(np.ascontiguousarray(src.numpy()), matrix.numpy(), (width, height),
                         flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=0.0)
    return torch.from_numpy(out)


@warp_affine_f32.register_fake
def _warp_fake(src: torch.Tensor, matrix: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return src.new_empty((height, width))


OPS = ("gvirtus::remap_bilinear_u8", "gvirtus::warp_affine_f32")
