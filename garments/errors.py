"""Errors of the garments package.

    GarmentError                    base: anything that went wrong preparing or finding a garment
    ├── InvalidGarmentImage         the array handed in is not an (H, W, 3) uint8 RGB image of usable size
    ├── NoGarmentFound              the photo holds no garment distinct from its background
    ├── LandmarkError               the silhouette is not a garment of its category (no body/shoulders of a top,
    │                               no waistband of a bottom, no waist of a dress)
    ├── GarmentFileRejected         a dropped file failed validation (type, size, dimensions, corrupt data)
    └── GarmentNotFound             no garment with that id in the catalog (also a KeyError)
"""

from __future__ import annotations


class GarmentError(Exception):
    """Base of every garments error."""


class InvalidGarmentImage(GarmentError, ValueError):  # noqa: N818 (names say what went wrong)
    pass


class NoGarmentFound(GarmentError):  # noqa: N818 (names say what went wrong)
    pass


class LandmarkError(GarmentError):
    pass


class GarmentFileRejected(GarmentError):  # noqa: N818 (names say what went wrong)
    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class GarmentNotFound(GarmentError, KeyError):  # noqa: N818 (names say what went wrong)
    def __init__(self, garment_id: str) -> None:
        super().__init__(f"no garment with id {garment_id!r} in the catalog; list the catalog for valid ids")
        self.garment_id = garment_id

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])
