"""garments: garment data shared by node 1 (catalog, preparation) and VITON (engines).

Pure image code (numpy, OpenCV, Pillow); no I/O frameworks and no configuration loading (callers pass paths).
Public face:
    Garment, LANDMARK_NAMES, content_id      the garment contract (see garments/types.py)
    CATEGORIES, KIND_CATEGORY, category_of(kind), landmark_names(category)   top / bottom / dress
    cloth_mask(image) -> mask                (H, W, 3) uint8 RGB -> (H, W) uint8 0/255
    find_landmarks(mask) -> LandmarkResult   .points (9, 2) float32 (x, y), .kind (a top)
    find_category_landmarks(mask, category)  a top's, a bottom's (7, 2) or a dress's (11, 2) landmarks
    prepare_garment(image, name, *, kind=None, mask=None, canvas=(768, 1024), category="top") -> Garment
    thumbnail(garment, size=192, fmt="JPEG") -> bytes
    Catalog(catalog_dir, drop_dir).load(), load_catalog(catalog_dir, drop_dir)
        .get(id), .garments, .entries, .listing(), .thumbnail(id), .rejected, .stats
    DropLimits, Rejected, decode_garment_file(data, name, limits)
    errors: GarmentError, InvalidGarmentImage, NoGarmentFound, LandmarkError, GarmentFileRejected, GarmentNotFound
The demo catalog is written at install time by `python -m garments.demo --out CATALOG_DIR/demo`.
"""

from __future__ import annotations

from garments.catalog import Catalog, CatalogEntry, DropLimits, Rejected, decode_garment_file, load_catalog
from garments.errors import (
    GarmentError,
    GarmentFileRejected,
    GarmentNotFound,
    InvalidGarmentImage,
    LandmarkError,
    NoGarmentFound,
)
from garments.landmarks import LandmarkResult, find_landmarks
from garments.mask import cloth_mask, fill_holes, keep_largest_component
from garments.prepare import (
    CANVAS_SIZE,
    find_category_landmarks,
    fit_canvas,
    prepare_garment,
    scale_into,
    thumbnail,
)
from garments.types import CATEGORIES, KIND_CATEGORY, LANDMARK_NAMES, Garment, category_of, content_id, landmark_names

__all__ = [
    "CANVAS_SIZE", "CATEGORIES", "KIND_CATEGORY", "LANDMARK_NAMES", "Catalog", "CatalogEntry", "DropLimits",
    "Garment", "GarmentError", "GarmentFileRejected", "GarmentNotFound", "InvalidGarmentImage", "LandmarkError",
    "LandmarkResult", "NoGarmentFound", "Rejected", "category_of", "cloth_mask", "content_id", "decode_garment_file",
    "fill_holes", "find_category_landmarks", "find_landmarks", "fit_canvas", "keep_largest_component",
    "landmark_names", "load_catalog", "prepare_garment", "scale_into", "thumbnail",
]
