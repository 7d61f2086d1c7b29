"""Boundary checks for engine inputs: one helper per tensor, each error names tensor, expected, got.

Used by every engine's `try_on` and by the service before it builds PersonData/GarmentData, so a
bad request becomes a typed `InvalidInput` reply instead of a crash deep inside an engine.
"""

from __future__ import annotations

import numpy as np

from viton.engine import GarmentData, PersonData
from viton.errors import InvalidInput

NUM_CIHP_LABELS = 20
NUM_BODY25 = 25
NUM_GARMENT_LANDMARKS = 9
MIN_SIDE_PX = 16
MAX_SIDE_PX = 4096


def check_array(name: str, arr: object, dtype: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """Check dtype and shape (None = any size in that dimension); returns the array.

    Raises:
        InvalidInput: "tensor 'parse' must be uint8 (H, W); got float32 (4, 5, 3)".
    """
    want = "(" + ", ".join("*" if d is None else str(d) for d in shape) + ")"
    if not isinstance(arr, np.ndarray):
        raise InvalidInput(f"tensor {name!r} must be a numpy array {dtype} {want}; got {type(arr).__name__}")
    ok = arr.dtype.name == dtype and arr.ndim == len(shape) and all(
        w is None or w == g for w, g in zip(shape, arr.shape, strict=True))
    if not ok:
        raise InvalidInput(f"tensor {name!r} must be {dtype} {want}; got {arr.dtype.name} {tuple(arr.shape)}")
    return arr


def _check_side(name: str, shape: tuple[int, ...]) -> None:
    h, w = shape[:2]
    if not (MIN_SIDE_PX <= h <= MAX_SIDE_PX and MIN_SIDE_PX <= w <= MAX_SIDE_PX):
        raise InvalidInput(f"tensor {name!r} is {h}x{w}; each side must be in {MIN_SIDE_PX}..{MAX_SIDE_PX} px")


def check_person(person: PersonData) -> None:
    """Validate a PersonData (see viton.engine for the contract). Raises InvalidInput."""
    img = check_array("person", person.image, "uint8", (None, None, 3))
    _check_side("person", img.shape)
    hw = img.shape[:2]
    check_array("parse", person.parse, "uint8", hw)
    check_array("keypoints", person.keypoints, "float32", (NUM_BODY25, 3))
    check_array("pose_render", person.pose_render, "uint8", (*hw, 3))
    top = int(person.parse.max())
    if top >= NUM_CIHP_LABELS:
        raise InvalidInput(f"tensor 'parse' holds label {top}; CIHP labels are 0..{NUM_CIHP_LABELS - 1}")
    if not np.isfinite(person.keypoints).all():
        raise InvalidInput("tensor 'keypoints' holds NaN or inf; missing points must be 0, 0, 0")
    if person.person_mask is not None:
        m = check_array("person_mask", person.person_mask, "float32", hw)
        lo, hi = float(m.min()), float(m.max())
        if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0.0 and hi <= 1.0):
            raise InvalidInput(f"tensor 'person_mask' must lie in [0, 1]; got [{lo}, {hi}]")


def check_garment(garment: GarmentData) -> None:
    """Validate a GarmentData (see viton.engine for the contract). Raises InvalidInput."""
    img = check_array("garment_image", garment.image, "uint8", (None, None, 3))
    _check_side("garment_image", img.shape)
    check_array("garment_mask", garment.mask, "uint8", img.shape[:2])
    lm = check_array("garment_landmarks", garment.landmarks, "float32", (NUM_GARMENT_LANDMARKS, 2))
    if not np.isfinite(lm).all():
        raise InvalidInput("tensor 'garment_landmarks' holds NaN or inf")
    if int((garment.mask >= 128).sum()) == 0:
        raise InvalidInput("tensor 'garment_mask' is empty: no pixel >= 128 marks cloth")
    if not isinstance(garment.kind, str) or not garment.kind:
        raise InvalidInput(f"garment kind must be a non-empty string; got {garment.kind!r}")
