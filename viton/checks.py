"""Engine-side boundary checks: PersonData / GarmentData against the one try-on contract.

The rules live in viton.contract (dtypes, shapes, labels, finiteness); this module applies them to the
engine's dataclasses, adds the side limits engines need, and raises the package's `InvalidInput`, so a
bad request becomes a typed error reply instead of a crash deep inside an engine.
"""

from __future__ import annotations

import numpy as np

from viton import contract
from viton.engine import GarmentData, PersonData
from viton.errors import InvalidInput

MIN_SIDE_PX = 16
MAX_SIDE_PX = 4096
# Engine-side name of each garment tensor (what the gateway forwards; viton.contract)
_GARMENT_SPECS = {contract.FORWARDED_GARMENT_NAMES[k]: v for k, v in contract.GARMENT_TENSORS.items()}


def _check_side(name: str, shape: tuple[int, ...]) -> None:
    h, w = shape[:2]
    if not (MIN_SIDE_PX <= h <= MAX_SIDE_PX and MIN_SIDE_PX <= w <= MAX_SIDE_PX):
        raise InvalidInput(f"tensor {name!r} is {h}x{w}; each side must be in {MIN_SIDE_PX}..{MAX_SIDE_PX} px")


def person_tensors(person: PersonData) -> dict[str, object]:
    """The wire names of a PersonData's tensors (viton.contract.PERSON_TENSORS); None fields left out."""
    named = {"person": person.image, "parse": person.parse, "keypoints": person.keypoints,
             "person_mask": person.person_mask}
    return {k: v for k, v in named.items() if v is not None}


def check_person(person: PersonData, reads: tuple[str, ...] = contract.ENGINE_READS["geometric"]) -> None:
    """Validate a PersonData for an engine that reads `reads` (viton.contract). Raises InvalidInput."""
    try:
        contract.check_person(person_tensors(person), reads, what="person")
    except contract.ContractError as exc:
        raise InvalidInput(str(exc).removeprefix("person: ")) from exc
    _check_side("person", person.image.shape)


def check_garment(garment: GarmentData) -> None:
    """Validate a GarmentData (viton.contract.GARMENT_TENSORS). Raises InvalidInput."""
    tensors = {"garment_image": garment.image, "garment_mask": garment.mask, "garment_landmarks": garment.landmarks}
    try:
        contract.check_tensors(tensors, _GARMENT_SPECS, tuple(tensors), what="garment")
    except contract.ContractError as exc:
        raise InvalidInput(str(exc).removeprefix("garment: ")) from exc
    _check_side("garment_image", garment.image.shape)
    if not np.isfinite(garment.landmarks).all():
        raise InvalidInput("tensor 'garment_landmarks' holds NaN or inf")
    if int((garment.mask >= 128).sum()) == 0:
        raise InvalidInput("tensor 'garment_mask' is empty: no pixel >= 128 marks cloth")
    if not isinstance(garment.kind, str) or not garment.kind:
        raise InvalidInput(f"garment kind must be a non-empty string; got {garment.kind!r}")
    try:
        contract.check_garment_landmarks(garment.kind, garment.landmarks)
    except contract.ContractError as exc:
        raise InvalidInput(str(exc).removeprefix("garment: ")) from exc
