"""From our data (viton.engine.PersonData / GarmentData) to VITON-HD's five input tensors.

Inputs of any size are letterboxed (scaled to fit, centred, padded) into the 1024 x 768 model
frame, as VITON-HD was trained on portrait 3:4 photos; ``Letterbox.restore`` maps results back.
Convention for every image tensor: (1, C, 1024, 768) float32, RGB, normalised to [-1, 1] as
``(x / 255 - 0.5) / 0.5``; masks and one-hot maps are float32 {0, 1}.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from viton.engine import GarmentData, PersonData
from viton.skeleton import render_skeleton
from viton.vitonhd.agnostic import NUM_BODY25, complete_keypoints, image_agnostic, parse_agnostic
from viton.vitonhd.errors import InputError
from viton.vitonhd.labels import cihp_to_seg13_onehot
from viton.vitonhd.options import CIHP_NUM_LABELS, VitonHDOptions

PERSON_PAD_RGB = (255, 255, 255)   # studio-white, like the VITON-HD photos
CLOTH_BACKGROUND_RGB = (255, 255, 255)
MASK_THRESHOLD = 128               # cloth mask pixels >= this are cloth


@dataclass(frozen=True)
class Letterbox:
    """Where a source image of size ``src`` sits inside the model frame ``dst`` (both (H, W)).

    ``box`` = (top, left, height, width) of the scaled image inside the frame, in frame pixels.
    Points map with pixel centres at integers: x' = (x + 0.5) * width / src_w - 0.5 + left.
    """

    src: tuple[int, int]
    dst: tuple[int, int]
    box: tuple[int, int, int, int]

    @classmethod
    def fit(cls, src: tuple[int, int], dst: tuple[int, int]) -> Letterbox:
        scale = min(dst[0] / src[0], dst[1] / src[1])
        h = min(dst[0], max(1, round(src[0] * scale)))
        w = min(dst[1], max(1, round(src[1] * scale)))
        return cls(src=src, dst=dst, box=((dst[0] - h) // 2, (dst[1] - w) // 2, h, w))

    def map_points(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) (x, y) source pixels -> frame pixels; (0, 0) (missing) stays (0, 0)."""
        top, left, h, w = self.box
        out = np.empty_like(xy, dtype=np.float64)
        out[:, 0] = (xy[:, 0] + 0.5) * (w / self.src[1]) - 0.5 + left
        out[:, 1] = (xy[:, 1] + 0.5) * (h / self.src[0]) - 0.5 + top
        out[(xy[:, 0] == 0) & (xy[:, 1] == 0)] = 0.0
        return out

    def apply(self, array: np.ndarray, resample: Image.Resampling, fill: int | tuple[int, ...]) -> np.ndarray:
        """Scale a (H, W) or (H, W, 3) uint8 source array into the frame, padding with ``fill``."""
        top, left, h, w = self.box
        img = Image.fromarray(array)
        if (h, w) != self.src:
            img = img.resize((w, h), resample)
        frame = Image.new(img.mode, (self.dst[1], self.dst[0]), fill)
        frame.paste(img, (left, top))
        return np.asarray(frame)

    def restore(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, C, dst_h, dst_w) float -> (B, C, src_h, src_w): crop the box, resize (bilinear, antialiased)."""
        top, left, h, w = self.box
        crop = maps[..., top:top + h, left:left + w]
        if (h, w) == self.src:
            return crop
        return F.interpolate(crop, size=self.src, mode="bilinear", align_corners=False, antialias=True)


@dataclass
class VitonHDInputs:
    """The official per-sample tensors (batch of 1) plus how the person maps into the frame.

    Attributes:
        cloth: (1, 3, H, W) cloth RGB in [-1, 1], white outside the cloth.
        cloth_mask: (1, 1, H, W) {0, 1}.
        pose: (1, 3, H, W) rendered OpenPose skeleton in [-1, 1] (black = -1).
        parse_agnostic: (1, 13, H, W) one-hot {0, 1}; channel 3 (upper) is empty.
        img_agnostic: (1, 3, H, W) cloth-agnostic person in [-1, 1].
        frame: the person's letterbox (to map outputs back).
        keypoints: (25, 2) float64 BODY_25 in frame pixels, after completion, before the hip rescale.
        notes: keypoints the adapter had to fill in.
    """

    cloth: torch.Tensor
    cloth_mask: torch.Tensor
    pose: torch.Tensor
    parse_agnostic: torch.Tensor
    img_agnostic: torch.Tensor
    frame: Letterbox
    keypoints: np.ndarray
    notes: list[str]

    def to(self, device: torch.device | str) -> VitonHDInputs:
        """The same inputs with every tensor on ``device``."""
        moved = {k: getattr(self, k).to(device) for k in ("cloth", "cloth_mask", "pose", "parse_agnostic",
                                                         "img_agnostic")}
        return VitonHDInputs(**moved, frame=self.frame, keypoints=self.keypoints, notes=list(self.notes))


def to_signed_unit(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (1, 3, H, W) float32 in [-1, 1] (ToTensor then Normalize(0.5, 0.5))."""
    t = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div(255.0)
    return t.sub(0.5).div(0.5).unsqueeze(0)


def _check_image(name: str, arr: object, size: tuple[int, int] | None = None) -> np.ndarray:
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"{name} must be an (H, W, 3) uint8 RGB array, got {_describe(arr)}")
    if min(arr.shape[:2]) < 1 or (size is not None and arr.shape[:2] != size):
        raise InputError(f"{name} must have size {size} (H, W), got {arr.shape[:2]}")
    return arr


def _check_plane(name: str, arr: object, size: tuple[int, int]) -> np.ndarray:
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.shape != size:
        raise InputError(f"{name} must be an {size} uint8 array, got {_describe(arr)}")
    return arr


def _describe(arr: object) -> str:
    if isinstance(arr, np.ndarray):
        return f"shape {arr.shape} dtype {arr.dtype}"
    return type(arr).__name__


def prepare_person(person: PersonData, options: VitonHDOptions) -> tuple[dict[str, torch.Tensor], Letterbox,
                                                                      np.ndarray, list[str]]:
    """Person -> {'pose', 'parse_agnostic', 'img_agnostic'} tensors, its letterbox, keypoints, notes."""
    image = _check_image("person.image", person.image)
    size = image.shape[:2]
    parse = _check_plane("person.parse", person.parse, size)
    kp = person.keypoints
    if not isinstance(kp, np.ndarray) or kp.shape != (NUM_BODY25, 3) or not np.isfinite(kp).all():
        raise InputError(f"person.keypoints must be a finite ({NUM_BODY25}, 3) BODY_25 array, got {_describe(kp)}")
    pose_render = render_skeleton(kp, size)  # drawn here, on node 2: the picture never crosses the network
    if int(parse.max()) >= CIHP_NUM_LABELS:
        bad = sorted(int(v) for v in np.unique(parse[parse >= CIHP_NUM_LABELS]))
        raise InputError(f"person.parse holds labels {bad[:8]} outside CIHP 0..{CIHP_NUM_LABELS - 1}")

    frame = Letterbox.fit(size, options.full_size)
    xy = np.where((kp[:, 2:3] > 0), kp[:, :2], 0.0).astype(np.float64)
    points, notes = complete_keypoints(frame.map_points(xy))
    image_f = frame.apply(image, Image.Resampling.BILINEAR, PERSON_PAD_RGB)
    parse_f = frame.apply(parse, Image.Resampling.NEAREST, 0)
    pose_f = frame.apply(pose_render, Image.Resampling.BILINEAR, (0, 0, 0))
    tensors = {
        "pose": to_signed_unit(pose_f),
        "parse_agnostic": cihp_to_seg13_onehot(parse_agnostic(parse_f, points)),
        "img_agnostic": to_signed_unit(image_agnostic(image_f, parse_f, points)),
    }
    return tensors, frame, points, notes


def prepare_garment(garment: GarmentData, options: VitonHDOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """Garment -> cloth (1, 3, H, W) in [-1, 1] (white outside the mask) and cloth mask (1, 1, H, W) {0, 1}."""
    image = _check_image("garment.image", garment.image)
    mask = _check_plane("garment.mask", garment.mask, image.shape[:2])
    cloth_px = mask >= MASK_THRESHOLD
    if not cloth_px.any():
        raise InputError(f"garment.mask has no cloth pixel (none >= {MASK_THRESHOLD})")
    whitened = np.where(cloth_px[..., None], image, np.asarray(CLOTH_BACKGROUND_RGB, dtype=np.uint8))
    frame = Letterbox.fit(image.shape[:2], options.full_size)
    cloth = frame.apply(whitened, Image.Resampling.BILINEAR, CLOTH_BACKGROUND_RGB)
    mask_f = frame.apply(mask, Image.Resampling.NEAREST, 0)
    cloth_mask = torch.from_numpy((mask_f >= MASK_THRESHOLD).astype(np.float32))[None, None]
    return to_signed_unit(cloth), cloth_mask


def make_inputs(person: PersonData, garment: GarmentData, options: VitonHDOptions | None = None) -> VitonHDInputs:
    """Build VITON-HD's inputs on CPU (see VitonHDInputs). Raises InputError on bad data."""
    opt = options or VitonHDOptions()
    cloth, cloth_mask = prepare_garment(garment, opt)
    person_t, frame, points, notes = prepare_person(person, opt)
    return VitonHDInputs(cloth=cloth, cloth_mask=cloth_mask, frame=frame, keypoints=points, notes=notes, **person_t)
