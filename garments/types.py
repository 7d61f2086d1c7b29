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

# Garment categories and the shape families (kinds) of each. The try-on contract carries the kind;
# its category follows from it (viton.contract.KIND_CATEGORY holds the same table, a test checks).
CATEGORIES: tuple[str, ...] = ("top", "bottom", "dress")
KIND_CATEGORY: dict[str, str] = {
    "tshirt": "top", "longsleeve": "top", "tank": "top", "shirt": "top", "hoodie": "top",
    "trousers": "bottom", "shorts": "bottom", "skirt": "bottom",
    "dress": "dress",
}
# Rows of a bottom's landmarks. Sides are the wearer's. A skirt has one hem: its crotch and inner hem
# corners all lie at the middle of that hem.
BOTTOM_LANDMARK_NAMES: tuple[str, ...] = (
    "waist_right",       # waistband's top corners
    "waist_left",
    "crotch",            # where the legs part (a skirt: the middle of its hem)
    "hem_right_outer",   # the right leg's hem: outer and inner corner
    "hem_right_inner",
    "hem_left_inner",    # the left leg's hem: inner and outer corner
    "hem_left_outer",
)
# A dress: a top's landmarks (its hem corners are the dress's hem), then its waist.
DRESS_LANDMARK_NAMES: tuple[str, ...] = (*LANDMARK_NAMES, "waist_right", "waist_left")
LANDMARK_NAMES_BY_CATEGORY: dict[str, tuple[str, ...]] = {
    "top": LANDMARK_NAMES, "bottom": BOTTOM_LANDMARK_NAMES, "dress": DRESS_LANDMARK_NAMES,
}


def category_of(kind: str) -> str:
    """The category ("top", "bottom", "dress") of a shape family; an unknown kind is a top (the
    kinds before categories existed were all tops)."""
    return KIND_CATEGORY.get(kind, "top")


def landmark_names(category: str) -> tuple[str, ...]:
    """Rows of a garment's landmarks for `category`. Raises ValueError for an unknown category."""
    try:
        return LANDMARK_NAMES_BY_CATEGORY[category]
    except KeyError:
        raise ValueError(f"garment category {category!r} is not one of {', '.join(CATEGORIES)}") from None


@dataclass(frozen=True)
class Garment:
    """A prepared garment.

    Attributes:
        id: content hash (sha256 hex of image + mask bytes and shapes); names it on every node.
        name: display name.
        image: (h, w, 3) uint8 RGB.
        mask: (h, w) uint8, 255 = cloth, 0 = background.
        landmarks: (N, 2) float32 (x, y) pixels, rows in `landmark_names(category)` order
            (LANDMARK_NAMES for a top).
        kind: shape family, e.g. "tshirt", "longsleeve", "tank", "shirt", "hoodie" (tops), "trousers",
            "shorts", "skirt" (bottoms), "dress"; KIND_CATEGORY gives its category.
    """

    id: str
    name: str
    image: np.ndarray
    mask: np.ndarray
    landmarks: np.ndarray
    kind: str = "tshirt"

    @property
    def category(self) -> str:
        """"top", "bottom" or "dress" (from the kind)."""
        return category_of(self.kind)

    def landmark(self, name: str) -> tuple[float, float]:
        x, y = self.landmarks[landmark_names(self.category).index(name)]
        return float(x), float(y)


def content_id(image: np.ndarray, mask: np.ndarray) -> str:
    """sha256 over shapes and bytes of image and mask: the garment's id everywhere."""
    h = hashlib.sha256()
    for a in (image, mask):
        h.update(repr((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()
