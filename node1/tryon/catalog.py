"""The garments package's Catalog seen through the web app's GarmentCatalog interface.

`open_catalog(cfg)` loads the demo garments (paths.catalog_dir/demo, generated if missing) and the
photos dropped into paths.garment_drop_dir. `WebCatalog.add` (the operator's POST /api/garments)
prepares the uploaded photo in memory first — a photo without a usable garment is refused before
anything is written — then writes the file into the drop folder, so it is part of the catalog
after a restart too, and swaps in a reloaded catalog. Readers never wait for a reload.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np

from garments import (
    Catalog,
    DropLimits,
    Garment,
    GarmentError,
    GarmentFileRejected,
    GarmentNotFound,
    LandmarkError,
    decode_garment_file,
    prepare_garment,
)
from garments.catalog import DROP_SUBFOLDERS
from mirror import Config
from node1.tryon.errors import (
    BadGarment,
    BadGarmentCategory,
    GarmentCategoryMismatch,
    GarmentNameTooLong,
    GarmentShowsPerson,
    UnknownGarment,
)
from node1.tryon.interface import GARMENT_CATEGORIES, GarmentInfo

THUMBNAIL_PX = 192
THUMBNAIL_MIME = "image/jpeg"
MAX_NAME_CHARS = 120          # docs/openapi.yaml: POST /api/garments name maxLength
_EXT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}

log = logging.getLogger(__name__)


def _image_format(data: bytes) -> str:
    """'JPEG', 'PNG', 'WEBP' (PIL's name for the already-validated upload), '' when unknown."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return str(im.format or "")
    except (OSError, UnidentifiedImageError):
        return ""


class WebCatalog:
    """Thread-safe GarmentCatalog over a garments.Catalog (also gives the pipeline the Garment itself)."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._swap = threading.Lock()      # guards the reference only
        self._adding = threading.Lock()    # one operator add at a time
        self._detector_lock = threading.Lock()
        self._detector: Any = None          # node1.pose's LocalRunner, made on the first add

    @property
    def catalog(self) -> Catalog:
        with self._swap:
            return self._catalog

    def garment(self, garment_id: str) -> Garment:
        """The prepared garment (image, mask, landmarks) for the pipeline. Raises UnknownGarment."""
        try:
            return self.catalog.get(garment_id)
        except GarmentNotFound as exc:
            raise UnknownGarment(f"no garment with id {garment_id[:80]!r}; list them with GET /api/garments") from exc

    def list(self) -> list[GarmentInfo]:
        return [GarmentInfo(g.id, g.name, g.category) for g in self.catalog.garments]

    def get(self, garment_id: str) -> GarmentInfo:
        g = self.garment(garment_id)
        return GarmentInfo(g.id, g.name, g.category)

    def thumbnail(self, garment_id: str) -> tuple[bytes, str]:
        catalog = self.catalog
        try:
            return catalog.thumbnail(garment_id, THUMBNAIL_PX, "JPEG"), THUMBNAIL_MIME
        except GarmentNotFound as exc:
            raise UnknownGarment(f"no garment with id {garment_id[:80]!r}") from exc

    def add(self, data: bytes, name: str, category: str = "top") -> GarmentInfo:
        """Prepare an operator's garment photo (JPEG/PNG/WebP bytes; PNG/WebP alpha = cloth mask) as a garment
        of `category` ("top", "bottom", "dress") and add it (a bottom or a dress into the drop folder's
        `bottom/` or `dress/` sub-folder).

        Raises BadGarment naming what is wrong (type, size, no garment found, not a top); BadGarmentCategory
        for another category; GarmentCategoryMismatch when the photo is not a garment of that category.
        """
        if category not in GARMENT_CATEGORIES:
            raise BadGarmentCategory(f"the garment category {category[:40]!r} is not one of "
                                     f"{', '.join(GARMENT_CATEGORIES)} (POST /api/garments, field 'category')")
        catalog = self.catalog
        if len(name.strip()) > MAX_NAME_CHARS:
            raise GarmentNameTooLong(f"the garment name is {len(name.strip())} characters long; the limit is "
                                     f"{MAX_NAME_CHARS} (POST /api/garments, field 'name')")
        clean = re.sub(r"\s+", " ", re.sub(r"[^\w \-]", "", name)).strip()
        if not clean:
            raise BadGarment(f"the garment name {name[:40]!r} has no letters or digits; give it a readable name")
        try:
            image, alpha_mask = decode_garment_file(data, clean, catalog.limits)
            self._refuse_a_person(image)
            prepare_garment(image, clean, mask=alpha_mask, category=category)   # refuse before anything is written
        except GarmentFileRejected as exc:
            raise BadGarment(f"the garment photo was refused: {exc.reason}") from exc
        except LandmarkError as exc:
            if category == "top":
                raise BadGarment(f"no usable garment in the photo ({exc}); photograph one top, front view, "
                                 "flat on a plain background") from exc
            raise GarmentCategoryMismatch(f"the photo does not look like a {category}: {exc}") from exc
        except GarmentError as exc:
            raise BadGarment(f"no usable garment in the photo ({exc}); photograph one top, front view, "
                             "flat on a plain background") from exc
        drop_dir = catalog.drop_dir
        if drop_dir is None:
            raise BadGarment("no garment drop folder is configured (paths.garment_drop_dir)")
        with self._adding:
            catalog = self.catalog
            same = self._drop_with_bytes(catalog, data, category)
            if same is not None:       # the same file was added before: the same garment
                return GarmentInfo(same.id, same.name, same.category)
            path = self._write_drop(drop_dir / DROP_SUBFOLDERS[category], clean, data)
            rel = path.relative_to(drop_dir).as_posix()
            fresh = Catalog(catalog.catalog_dir, catalog.drop_dir, limits=catalog.limits,
                            generate_demo=False).load()
            # Found by file name, not by content id: preparation is not bit-for-bit repeatable.
            added = next((e.garment for e in fresh.entries if e.source == "drop" and e.file == rel), None)
            if added is None:
                reason = next((r.reason for r in fresh.rejected if r.file == rel), "not found after reload")
                path.unlink(missing_ok=True)
                raise BadGarment(f"the garment photo could not be added: {reason}")
            with self._swap:
                self._catalog = fresh
        log.info("operator added garment %s (%s, a %s) as %s", added.id[:12], clean, category, rel)
        return GarmentInfo(added.id, added.name, added.category)

    def _refuse_a_person(self, image: np.ndarray) -> None:
        """Raise GarmentShowsPerson when node 1's face detector or pose detector finds a person in the
        (H, W, 3) uint8 RGB garment photo (on this process's CPU, the portable models)."""
        from node1.pose import NoPersonDetected, detect_faces, estimate_pose
        from node1.pose.runners import LocalRunner

        with self._detector_lock:
            if self._detector is None:
                self._detector = LocalRunner("cpu", cpu_fast=False)
            faces = detect_faces(image, self._detector)
            if faces:
                raise GarmentShowsPerson(f"the garment photo shows a person (a face, detector score "
                                         f"{faces[0].score:.2f}); upload a product photo of the garment alone, "
                                         "flat on a plain background")
            try:
                pose = estimate_pose(image, self._detector)
            except NoPersonDetected:
                return
        raise GarmentShowsPerson(f"the garment photo shows a person (a body, pose detector score "
                                 f"{float(pose.detection_score):.2f}); upload a product photo of the garment "
                                 "alone, flat on a plain background")

    @staticmethod
    def _drop_with_bytes(catalog: Catalog, data: bytes, category: str) -> Garment | None:
        if catalog.drop_dir is None:
            return None
        for entry in catalog.entries:
            if entry.source == "drop" and entry.file and entry.garment.category == category:
                path = catalog.drop_dir / entry.file
                try:
                    if path.stat().st_size == len(data) and path.read_bytes() == data:
                        return entry.garment
                except OSError:
                    continue
        return None

    @staticmethod
    def _write_drop(drop_dir: Path, name: str, data: bytes) -> Path:
        ext = _EXT.get(_image_format(data), ".img")
        drop_dir.mkdir(parents=True, exist_ok=True)
        stem = name.replace(" ", "_")
        path = drop_dir / f"{stem}{ext}"
        n = 2
        while path.exists():
            path = drop_dir / f"{stem}_{n}{ext}"
            n += 1
        tmp = drop_dir / f".{path.name}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return path


def open_catalog(cfg: Config, *, generate_demo: bool = True) -> WebCatalog:
    """The catalog the web app serves: paths.catalog_dir (demo) + paths.garment_drop_dir (dropped photos)."""
    paths, limits = cfg["paths"], cfg["limits"]
    drop = paths.get("garment_drop_dir")
    max_side = int(limits["image_max_side"])
    catalog = Catalog(cfg.path(paths["catalog_dir"]), cfg.path(drop) if drop else None,
                      limits=DropLimits(max_bytes=int(limits["upload_max_mb"] * 1024 * 1024), max_side=max_side,
                                        max_pixels=max_side * max_side),
                      generate_demo=generate_demo).load()
    return WebCatalog(catalog)
