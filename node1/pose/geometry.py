"""Geometry of mediapipe's BlazePose / face pipelines (see shared/reference/blazepose_facts.md).

Convention: pixel-index coordinates (pixel centres at integers, as in OpenCV); normalised
coordinates are ``index / size``; angles in radians, positive = clockwise on screen (y down).
Host-side helpers here work on tiny numpy arrays (anchors, NMS, ROI); the sampling grids are torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from gvirtus import kernels  # the warp kernels (torch custom ops; OpenCV on the CPU, tensor ops elsewhere)


def ssd_anchors(input_size: int, strides: list[int]) -> np.ndarray:
    """SSD anchor centres, (A, 2) float32 (x, y) normalised, fixed size, 2 anchors per layer, merged strides.

    Order: layer group -> y -> x -> anchor, as mediapipe's SsdAnchorsCalculator emits them.
    """
    out: list[tuple[float, float]] = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        per_cell = 2 * (j - i)
        fm = math.ceil(input_size / strides[i])
        for y in range(fm):
            for x in range(fm):
                out.extend([((x + 0.5) / fm, (y + 0.5) / fm)] * per_cell)
        i = j
    return np.asarray(out, dtype=np.float32)


INTER_TAB = kernels.INTER_TAB  # OpenCV's INTER_TAB_SIZE: source coordinates are rounded to 1/32 px
BORDERS = {"zeros": kernels.BORDER_ZERO, "replicate": kernels.BORDER_REPLICATE}


def crop_coords(center_x: torch.Tensor | float, center_y: torch.Tensor | float,  # noqa: PLR0917
                size_x: torch.Tensor | float, size_y: torch.Tensor | float, theta: torch.Tensor | float,
                out_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Source coordinates of mediapipe's ImageToTensor crop (no half-pixel centring), float64.

    Tensor pixel (col i, row j) samples P = C + (i/N - 1/2) S_x (cos t, sin t) + (j/N - 1/2) S_y (-sin t, cos t).
    Returns ``(px, py)``, each (N, N) float64 pixel-index coordinates in the source image.
    """
    r = torch.arange(out_size, device=device, dtype=torch.float64) / out_size - 0.5
    c = torch.cos(torch.as_tensor(theta, dtype=torch.float64, device=device))
    s = torch.sin(torch.as_tensor(theta, dtype=torch.float64, device=device))
    u = r[None, :] * size_x
    v = r[:, None] * size_y
    return center_x + u * c - v * s, center_y + u * s + v * c


def sample_u8(image: torch.Tensor, px: torch.Tensor, py: torch.Tensor, border: str) -> torch.Tensor:
    """OpenCV's uint8 INTER_LINEAR warp, reproduced exactly: coordinates rounded to 1/32 px, integer
    bilinear weights, result rounded ``(sum + 2^14) >> 15`` - as mediapipe's CPU ImageToTensor does.

    (A plain float ``grid_sample`` moves landmarks by up to 8 px; this keeps the crop bit-identical to
    mediapipe's up to float rounding of the coordinates.) The sampling is one gvirtus.kernels op: cv2.remap
    on the CPU, tensor ops on other devices, bit-identical; a gvirtus backend runs it as one kernel.

    Args:
        image: (H, W, C) uint8 (the photo as uploaded: only the sampled pixels are converted to float).
        px, py: (N, M) float64 source coordinates, pixel-index convention.
        border: "zeros" (BORDER_CONSTANT 0) or "replicate" (BORDER_REPLICATE).
    Returns:
        (1, C, N, M) float32 integers in [0, 255], contiguous.
    """
    xq = torch.round(px * INTER_TAB).to(torch.int32)  # fixed point, 1/32 px (OpenCV's INTER_BITS = 5)
    yq = torch.round(py * INTER_TAB).to(torch.int32)
    pixels = torch.ops.gvirtus.remap_bilinear_u8(image, xq, yq, BORDERS[border])  # (N, M, C) uint8
    return pixels.permute(2, 0, 1).unsqueeze(0).float().contiguous()


@dataclass(frozen=True)
class Detection:
    """One detection in normalised image coordinates: box (xmin, ymin, xmax, ymax), keypoints (K, 2), score."""

    box: np.ndarray
    keypoints: np.ndarray
    score: float

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0) * max(self.box[3] - self.box[1], 0))


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box a (4,) against boxes b (M, 4), all (xmin, ymin, xmax, ymax)."""
    ix = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    iy = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.where(inter > 0, inter / np.maximum(union, 1e-12), 0.0)


def weighted_nms(scores: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray, threshold: float = 0.3
                 ) -> list[Detection]:
    """mediapipe's WEIGHTED non-max suppression (IoU > threshold), score-descending, in float32 like mediapipe.

    Args:
        scores: (M,) float; boxes: (M, 4) (xmin, ymin, xmax, ymax); keypoints: (M, K, 2); all normalised.
    Returns:
        detections whose box/keypoints are score-weighted means of each cluster (summed in score order, as
        mediapipe does), score = the cluster's top.
    """
    f32 = np.float32
    order = np.argsort(-scores, kind="stable")
    scores, boxes, keypoints = scores[order].astype(f32), boxes[order].astype(f32), keypoints[order].astype(f32)
    remaining = list(range(len(scores)))
    out: list[Detection] = []
    while remaining:
        top = remaining[0]
        ious = _iou(boxes[top].astype(np.float64), boxes[remaining].astype(np.float64))
        members = [k for k, iou in zip(remaining, ious, strict=True) if iou > threshold or k == top]
        total, box, kps = f32(0), np.zeros(4, f32), np.zeros(keypoints.shape[1:], f32)
        for k in members:
            total = f32(total + scores[k])
            box = (box + boxes[k] * scores[k]).astype(f32)
            kps = (kps + keypoints[k] * scores[k]).astype(f32)
        out.append(Detection((box / total).astype(f32), (kps / total).astype(f32), float(scores[top])))
        remaining = [k for k in remaining if k not in members]
    return out


def remove_letterbox(det: Detection, image_wh: tuple[int, int]) -> Detection:
    """Map a detection from the centred-square letterboxed frame to normalised image coordinates (float32)."""
    w, h = image_wh
    side = max(w, h)
    pad = np.array([(1 - w / side) / 2, (1 - h / side) / 2], dtype=np.float32)
    scale = (np.float32(1) - 2 * pad).astype(np.float32)
    box = ((det.box - np.tile(pad, 2)) / np.tile(scale, 2)).astype(np.float32)
    return Detection(box, ((det.keypoints - pad) / scale).astype(np.float32), det.score)


@dataclass(frozen=True)
class Roi:
    """The rotated square the landmark model sees: centre (x, y) in pixels, side in pixels, rotation in radians."""

    cx: float
    cy: float
    size: float
    theta: float

    def as_tensor(self) -> torch.Tensor:
        """(4,) float32 [cx, cy, size, theta]: mediapipe keeps its ROI in float32, and the landmark model is
        sensitive enough to the crop that rounding the ROI like mediapipe matters (a hand moved 24 px on
        skimage's camera with a float64 ROI, 0.03 px with float32)."""
        return torch.tensor([self.cx, self.cy, self.size, self.theta], dtype=torch.float32)


def pose_roi(det: Detection, image_wh: tuple[int, int], scale: float = 1.25) -> Roi:
    """ROI from keypoint 0 (hip centre) and 1 (full-body size/rotation point): side 2.5 |p1 - p0| px.

    Computed step by step in float32 as mediapipe's AlignmentPointsRects + RectTransformation calculators
    do (normalised rect, then x1.25, then square_long), because the landmark model is that sensitive.
    """
    f32 = np.float32
    w, h = f32(image_wh[0]), f32(image_wh[1])
    x0, y0 = f32(det.keypoints[0, 0] * w), f32(det.keypoints[0, 1] * h)
    x1, y1 = f32(det.keypoints[1, 0] * w), f32(det.keypoints[1, 1] * h)
    dx, dy = f32(x1 - x0), f32(y1 - y0)
    box = f32(np.sqrt(f32(dx * dx + dy * dy)) * f32(2))
    angle = f32(f32(math.pi * 90 / 180) - f32(np.arctan2(-dy, dx)))
    angle = f32(angle - f32(2 * math.pi) * f32(np.floor((angle + f32(math.pi)) / f32(2 * math.pi))))
    width_n, height_n = f32(f32(box / w) * f32(scale)), f32(f32(box / h) * f32(scale))
    long_side = max(f32(width_n * w), f32(height_n * h))
    width_n, height_n = f32(long_side / w), f32(long_side / h)
    cx_n, cy_n = f32(x0 / w), f32(y0 / h)
    return Roi(float(f32(cx_n * w)), float(f32(cy_n * h)), float(f32(width_n * w)), float(angle))
