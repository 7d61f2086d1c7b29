"""The garment contract.

Convention: pixel coordinates (x, y), origin top-left, pixel centres at integers. Garment photos
are front views, so the wearer's LEFT side appears on the image's RIGHT (as for a person facing
the camera; BODY_25 and CIHP also name sides from the subject's point of view).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

# Order of rows in `Garment.landmarks`. Sides are the wearer's.
LANDMARK_NAMES: tuple[str, ...] = (
    "collar",          # centre of the neckline (front), top of the torso
    "shoulder_right",  # shoulder seam tips
    "shoulder_left",
    "armpit_right",    # where sleeve meets body under the arm
    "armpit_left",
    "hem_right",       # bottom corners of the body
    "hem_left",
    "cuff_right",      # end of the sleeve (outer-most sleeve point; = shoulder tip for sleeveless)
    "cuff_left",
)


@dataclass(frozen=True)
class Garment:
    """A prepared garment.

    Attributes:
        id: content hash (sha256 hex of image + mask bytes and shapes); names it on every node.
        name: display name.
        image: (h, w, 3) uint8 RGB.
        mask: (h, w) uint8, 255 = cloth, 0 = background.
        landmarks: (len(LANDMARK_NAMES), 2) float32 (x, y) pixels, rows in LANDMARK_NAMES order.
        kind: shape family, e.g. "tshirt", "longsleeve", "tank", "shirt", "hoodie".
    """

    id: str
    name: str
    image: np.ndarray
    mask: np.ndarray
    landmarks: np.ndarray
    kind: str = "tshirt"

    def landmark(self, name: str) -> tuple[float, float]:
        x, y = self.landmarks[LANDMARK_NAMES.index(name)]
        return float(x), float(y)


def content_id(image: np.ndarray, mask: np.ndarray) -> str:
    """sha256 over shapes and bytes of image and mask: the garment's id everywhere."""
    h = hashlib.sha256()
    for a in (image, mask):
        h.update(repr((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()
