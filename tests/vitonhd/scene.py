"""Test inputs for the VITON-HD adapter: a real photo (skimage's astronaut) with hand-placed BODY_25
keypoints and a plausible CIHP parse drawn from simple geometry.

The parse and keypoints are stand-ins until the parsing/pose helpers' real outputs are wired in:
they are traced by eye on the 512 x 512 photo (head, orange suit, collar ring, a gloved hand), not
produced by a model. The garment is a t-shirt silhouette filled with a real photo texture.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from viton.engine import GarmentData, PersonData

# BODY_25 (x, y) on the 512 x 512 astronaut photo; hips lie below the frame (the photo cuts them off).
ASTRONAUT_KEYPOINTS: dict[int, tuple[float, float]] = {
    0: (222, 128), 1: (218, 232), 2: (100, 268), 3: (50, 420), 4: (140, 495),
    5: (338, 268), 6: (362, 425), 7: (300, 500), 8: (220, 600), 9: (160, 600), 12: (282, 600),
    15: (205, 118), 16: (245, 118), 17: (178, 128), 18: (290, 128),
}

# OpenPose-style limbs and colours (RGB) for the rendered skeleton.
LIMBS: tuple[tuple[int, int, tuple[int, int, int]], ...] = (
    (1, 8, (255, 0, 0)), (1, 2, (255, 85, 0)), (1, 5, (170, 255, 0)), (2, 3, (255, 170, 0)),
    (3, 4, (255, 255, 0)), (5, 6, (85, 255, 0)), (6, 7, (0, 255, 0)), (8, 9, (0, 255, 85)),
    (8, 12, (0, 170, 255)), (1, 0, (255, 0, 85)), (0, 15, (170, 0, 255)), (0, 16, (255, 0, 170)),
    (15, 17, (255, 0, 255)), (16, 18, (85, 0, 255)),
)


def astronaut_keypoints() -> np.ndarray:
    """(25, 3) float32 BODY_25 (x, y, confidence), missing = 0, 0, 0."""
    kp = np.zeros((25, 3), dtype=np.float32)
    for idx, (x, y) in ASTRONAUT_KEYPOINTS.items():
        kp[idx] = (x, y, 0.9)
    return kp


def astronaut_parse(size: tuple[int, int] = (512, 512)) -> np.ndarray:
    """(H, W) uint8 CIHP-20 parse of the astronaut photo drawn from ellipses and polygons."""
    h, w = size
    img = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(img)
    d.polygon([(22, 512), (30, 300), (105, 238), (330, 238), (362, 300), (368, 512)], fill=7)  # suit = coat
    d.polygon([(22, 512), (30, 300), (70, 270), (110, 420), (150, 470), (120, 512)], fill=15)  # right sleeve/arm
    d.polygon([(330, 300), (362, 300), (368, 512), (300, 512), (330, 420)], fill=14)          # left arm
    d.ellipse((125, 470, 185, 512), fill=3)                                                    # glove
    d.ellipse((150, 170, 290, 250), fill=10)                                                   # collar / neck
    d.ellipse((150, 15, 305, 175), fill=2)                                                     # hair
    d.ellipse((178, 60, 272, 185), fill=13)                                                    # face
    return np.asarray(img, dtype=np.uint8).copy()


def render_pose(keypoints: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 skeleton in OpenPose colours on black."""
    img = Image.new("RGB", (size[1], size[0]), (0, 0, 0))
    d = ImageDraw.Draw(img)
    for a, b, colour in LIMBS:
        if keypoints[a, 2] > 0 and keypoints[b, 2] > 0:
            d.line([tuple(keypoints[a, :2]), tuple(keypoints[b, :2])], fill=colour, width=4)
    for x, y, c in keypoints:
        if c > 0:
            d.ellipse((x - 4, y - 4, x + 4, y + 4), fill=(255, 255, 255))
    return np.asarray(img, dtype=np.uint8).copy()


def astronaut_person(photo: np.ndarray) -> PersonData:
    kp = astronaut_keypoints()
    return PersonData(image=photo, parse=astronaut_parse(photo.shape[:2]), keypoints=kp)


def tshirt_garment(texture: np.ndarray, size: tuple[int, int] = (400, 300)) -> GarmentData:
    """A t-shirt silhouette (front view) on white, filled with a crop of ``texture`` (H, W, 3 uint8)."""
    h, w = size
    mask_img = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(mask_img)
    d.polygon([(0.35 * w, 0.05 * h), (0.65 * w, 0.05 * h), (0.95 * w, 0.2 * h), (0.85 * w, 0.38 * h),
               (0.75 * w, 0.33 * h), (0.75 * w, 0.95 * h), (0.25 * w, 0.95 * h), (0.25 * w, 0.33 * h),
               (0.15 * w, 0.38 * h), (0.05 * w, 0.2 * h)], fill=255)
    mask = np.asarray(mask_img, dtype=np.uint8).copy()
    tex = np.asarray(Image.fromarray(texture).resize((w, h), Image.Resampling.BILINEAR))
    image = np.where(mask[..., None] >= 128, tex, np.uint8(255)).astype(np.uint8)
    landmarks = np.zeros((9, 2), dtype=np.float32)
    return GarmentData(image=image, mask=mask, landmarks=landmarks, kind="tshirt")
