"""The device-side work as small nn.Modules ("stages"), run locally or registered once with gvirtus.

The split keeps weights apart from image-size-dependent work: model stages have fixed input shapes,
so gvirtus registers (and uploads) their weights once; the weight-free stages (letterbox, crop, mask
warp) are re-registered per image size at almost no cost. Intermediate tensors stay on the device.

Conventions: ``image: (H, W, 3) uint8 RGB`` (the photo as uploaded, never converted as a whole);
``roi: (4,) float32 [cx, cy, side, theta]``
(pixel-index coords, pixels, radians); sampling exactly as mediapipe's CPU ImageToTensor (geometry.sample_u8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from node1.pose.geometry import crop_coords, sample_u8, ssd_anchors

POSE_DETECTOR_SIZE = 224
POSE_LANDMARK_SIZE = 256
POSE_STRIDES = [8, 16, 32, 32, 32]
FACE_DETECTOR_SIZE = 128
FACE_STRIDES = [8, 16, 16, 16]
SELFIE_SIZE = 256
HEATMAP_KERNEL = 9  # what mp.solutions.pose effectively uses (facts sheet, surprise 1)
REFINE_MIN_CONFIDENCE = 0.5
TOP_K = 64  # detector candidates sent back to the host for NMS
SCORE_CLIP = 100.0


class PrepareImage(nn.Module):
    """(H, W, 3) uint8 RGB -> the same tensor: the upload itself. Run with keep=True, the photo a launch
    received stays on the device as its output for the other stages to read, without a copy there (a CUDA
    runner copies it to the device as it does every input). No stage writes into it."""

    def forward(self, image_u8: torch.Tensor) -> torch.Tensor:
        return image_u8


class PreparedInput(nn.Module):
    """The upload and a whole-image model input in one launch: image -> (device copy, model input), so a
    remote pose step pays one round trip for both (gvirtus: ~0.5-1 ms each on the 2-core VM)."""

    def __init__(self, prepare: nn.Module, model_input: nn.Module) -> None:
        super().__init__()
        self.prepare, self.model_input = prepare, model_input

    def forward(self, image_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.prepare(image_u8)
        return image, self.model_input(image)


class FullImageInput(nn.Module):
    """mediapipe's whole-image model input: centred letterbox square (``keep_aspect``) or stretched image,
    BORDER_ZERO, rounded to uint8, scaled to ``[lo, hi]``. image -> (1, 3, N, N) float32."""

    def __init__(self, size: int, lo: float, hi: float, keep_aspect: bool = True) -> None:
        super().__init__()
        self.size, self.lo, self.hi, self.keep_aspect = size, lo, hi, keep_aspect

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[0], image.shape[1]
        sx, sy = (float(max(w, h)),) * 2 if self.keep_aspect else (float(w), float(h))
        px, py = crop_coords(w / 2, h / 2, sx, sy, 0.0, self.size, image.device)
        return sample_u8(image, px, py, "zeros") * ((self.hi - self.lo) / 255.0) + self.lo


class SsdDetector(nn.Module):
    """SSD detector + box decoding + top-k (pose detector 224 px / 2254 anchors, face detector 128 px / 896).

    forward(x: (1, 3, N, N) float32 in [-1, 1]) -> (K, 1 + 4 + 2P) float32 rows
    [score, xc, yc, w, h, kx0, ky0, ...] sorted by score, normalised to the letterboxed square;
    score = sigmoid(clip(logit, +-100)).
    """

    def __init__(self, model: nn.Module, input_size: int, strides: list[int], top_k: int = TOP_K) -> None:
        super().__init__()
        self.model = model
        self.input_size = input_size
        self.top_k = top_k
        self.anchors: torch.Tensor
        self.register_buffer("anchors", torch.from_numpy(ssd_anchors(input_size, strides)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw, logits = self.model(x)[:2]
        raw = raw[0] / self.input_size
        n_kp = (raw.shape[1] - 4) // 2
        offsets = torch.cat([self.anchors, torch.zeros_like(self.anchors), self.anchors.repeat(1, n_kp)], dim=1)
        decoded = raw + offsets
        scores = torch.sigmoid(logits[0, :, 0].clamp(-SCORE_CLIP, SCORE_CLIP))
        top = torch.topk(scores, min(self.top_k, scores.shape[0]))
        return torch.cat([top.values[:, None], decoded[top.indices]], dim=1)


class PoseCrop(nn.Module):
    """(image, roi) -> (1, 3, 256, 256) float32 in [0, 1]: the rotated ROI, BORDER_REPLICATE, uint8-rounded."""

    def forward(self, image: torch.Tensor, roi: torch.Tensor) -> torch.Tensor:
        r = roi.double()
        px, py = crop_coords(r[0], r[1], r[2], r[2], r[3], POSE_LANDMARK_SIZE, image.device)
        return sample_u8(image, px, py, "replicate") / 255.0


class PoseLandmarks(nn.Module):
    """Landmark model + heatmap refinement (kernel 9) + projection to image pixels.

    forward(crop, roi) ->
        landmarks: (39, 5) float32 [x px, y px, z (mediapipe's normalised z), visibility, presence]
        world: (33, 3) float32 metres, rotated by theta (mediapipe's world landmarks)
        presence: (1,) float32 pose presence in [0, 1]
        seg: (1, 1, 256, 256) float32 person probability in the crop
    """

    def __init__(self, model: nn.Module, kernel: int = HEATMAP_KERNEL) -> None:
        super().__init__()
        self.model = model
        self.offsets: torch.Tensor
        self.register_buffer("offsets", torch.arange(-(kernel // 2), kernel // 2 + 1, dtype=torch.long))

    def refine(self, xn: torch.Tensor, yn: torch.Tensor, heatmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """mediapipe's RefineLandmarksFromHeatmap: xn, yn (L,) normalised crop coords; heatmap (L, 64, 64) logits."""
        n, hh, hw = heatmap.shape
        col = torch.trunc(xn * hw).long()  # C++ (int) cast
        row = torch.trunc(yn * hh).long()
        inside = (col >= 0) & (col < hw) & (row >= 0) & (row < hh)
        cols = col[:, None] + self.offsets
        rows = row[:, None] + self.offsets
        valid = ((rows >= 0) & (rows < hh))[:, :, None] & ((cols >= 0) & (cols < hw))[:, None, :]
        idx = torch.arange(n, device=heatmap.device)[:, None, None]
        conf = torch.sigmoid(heatmap[idx, rows.clamp(0, hh - 1)[:, :, None], cols.clamp(0, hw - 1)[:, None, :]])
        conf = conf * valid.float()
        total = conf.sum(dim=(1, 2))
        peak = conf.amax(dim=(1, 2))
        wx = (conf * cols[:, None, :].float()).sum(dim=(1, 2))
        wy = (conf * rows[:, :, None].float()).sum(dim=(1, 2))
        ok = inside & (peak >= REFINE_MIN_CONFIDENCE) & (total > 0)
        safe = torch.where(total > 0, total, torch.ones_like(total))
        return torch.where(ok, wx / safe / hw, xn), torch.where(ok, wy / safe / hh, yn)

    def forward(self, crop: torch.Tensor, roi: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = POSE_LANDMARK_SIZE
        raw, presence, seg, heat, world = self.model(crop)
        cx, cy, side, theta = roi[0], roi[1], roi[2], roi[3]
        c, s = torch.cos(theta), torch.sin(theta)
        lm = raw[0].reshape(-1, 5)
        xn, yn = self.refine(lm[:, 0] / n, lm[:, 1] / n, heat[0])
        dx, dy = xn - 0.5, yn - 0.5
        x_px = cx + (c * dx - s * dy) * side
        y_px = cy + (s * dx + c * dy) * side
        z = lm[:, 2] / n * side  # divided by the image width on the host (mediapipe: z_n * roi width_n)
        landmarks = torch.stack([x_px, y_px, z, torch.sigmoid(lm[:, 3]), torch.sigmoid(lm[:, 4])], dim=1)
        wl = world[0].reshape(-1, 3)[:33]
        world_rot = torch.stack([c * wl[:, 0] - s * wl[:, 1], s * wl[:, 0] + c * wl[:, 1], wl[:, 2]], dim=1)
        return landmarks, world_rot, presence[0], torch.sigmoid(seg)


class PoseMask(nn.Module):
    """Crop probability -> image mask: image pixel P samples m = 256 R(-theta)(P - C) / side + 128
    (bilinear, BORDER_ZERO, no half-pixel offsets, as mediapipe's WarpAffine; gvirtus.kernels.warp_affine_f32:
    cv2.warpAffine on the CPU, grid_sample elsewhere).

    forward(image, seg, roi) -> mask (H, W) uint8, 255 = person. The image is only read for its size.
    """

    def forward(self, image: torch.Tensor, seg: torch.Tensor, roi: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[0], image.shape[1]
        r = roi.double()
        cx, cy, side, theta = r[0], r[1], r[2], r[3]
        c, s = torch.cos(theta), torch.sin(theta)
        n = seg.shape[-1]
        q = n / side
        # m = q R(-theta) (P - C) + n/2 with R(-theta) = [[c, s], [-s, c]], as a (2, 3) map of (x, y, 1)
        matrix = torch.stack([torch.stack([q * c, q * s, n / 2 - q * (c * cx + s * cy)]),
                              torch.stack([-q * s, q * c, n / 2 - q * (c * cy - s * cx)])])
        out = torch.ops.gvirtus.warp_affine_f32(seg[0, 0], matrix, h, w)
        return (out * 255.0 + 0.5).to(torch.uint8)  # values >= 0.5: the cast's truncation rounds


class SelfieModel(nn.Module):
    """mediapipe selfie segmentation (general 256x256): x (1, 3, 256, 256) in [0, 1] -> (1, 1, 256, 256) in [0, 1]."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)[0]


class ResizeMask(nn.Module):
    """(image, prob (1, 1, n, n)) -> (H, W) uint8: half-pixel bilinear resize to the image size (cv::resize)."""

    def forward(self, image: torch.Tensor, prob: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[0], image.shape[1]
        up = F.interpolate(prob, size=(h, w), mode="bilinear", align_corners=False)
        return torch.floor(up[0, 0].clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
