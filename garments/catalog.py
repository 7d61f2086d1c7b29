"""The garment catalog: the demo garments plus the photos an operator drops into a folder.

Layout under catalog_dir (the caller passes paths; this package reads no configuration):
    demo/                      the demo catalog (python -m garments.demo --out CATALOG_DIR/demo)
    prepared/v<N>-<sha256>/    a dropped file, prepared once: image.png, mask.png, garment.json
                               (or rejected.json with the reason), keyed by the sha256 of the file's bytes
                               (and, for a bottom or a dress, its category)
The drop folder holds tops; its sub-folders `bottom/` and `dress/` hold bottoms (trousers, shorts,
skirts) and dresses (DROP_SUBFOLDERS), prepared as garments of that category.

Dropped files are validated before decoding (type by content, byte size, pixel dimensions; Pillow's
decompression-bomb guard stays on and its warning counts as an error) and a bad file is logged, listed in
`Catalog.rejected` with its reason and skipped — loading never fails because of one file.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from garments.demo.catalog import DEMO_DESIGNS, MANIFEST_NAME, demo_catalog_valid, write_demo_catalog
from garments.errors import GarmentError, GarmentFileRejected, GarmentNotFound
from garments.prepare import STORE_VERSION, load_garment, prepare_garment, save_garment, thumbnail
from garments.types import CATEGORIES, Garment

log = logging.getLogger("garments.catalog")

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
# The default drop folder is the repository's garments/ folder, which also holds this package's source:
# those files are not garment photos and are skipped silently (as are hidden files and sub-folders).
IGNORED_SUFFIXES = frozenset({".py", ".pyc", ".pyi", ".md", ".typed"})
BACKDROP_RGB = (240, 238, 233)   # what transparent pixels of a dropped PNG/WebP are composited onto
ALPHA_MASK_MIN_FRAC = 0.02       # at least this much transparency: the alpha channel is the cloth mask
# category -> the drop folder's sub-folder holding that category's photos ("" = the drop folder itself)
DROP_SUBFOLDERS = {"top": "", "bottom": "bottom", "dress": "dress"}


@dataclass(frozen=True)
class DropLimits:
    max_bytes: int = 10 * 1024 * 1024
    max_side: int = 4096
    max_pixels: int = 4096 * 4096
    min_side: int = 64


@dataclass(frozen=True)
class Rejected:
    file: str      # file name inside the drop folder
    reason: str


@dataclass(frozen=True)
class CatalogEntry:
    garment: Garment
    source: str                # "demo" or "drop"
    file: str | None = None    # the dropped file's path inside the drop folder ("bottom/jeans.jpg")


def display_name(path: Path) -> str:
    words = re.sub(r"[_\-.]+", " ", path.stem).strip()
    return (words[:1].upper() + words[1:]) if words else path.name


def decode_garment_file(data: bytes, name: str, limits: DropLimits = DropLimits()
                        ) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate and decode a dropped file.

    Returns (image (H, W, 3) uint8 RGB, mask (H, W) uint8 or None); the mask comes from an alpha channel
    with real transparency. Raises GarmentFileRejected with a reason a person can act on.
    """
    if not data:
        raise GarmentFileRejected(name, "empty file (0 bytes)")
    if len(data) > limits.max_bytes:
        raise GarmentFileRejected(name, f"file is {len(data)} bytes; the limit is {limits.max_bytes} bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                if im.format not in ALLOWED_FORMATS:
                    raise GarmentFileRejected(name, f"unsupported image format {im.format} (use JPEG, PNG or WebP)")
                w, h = im.size
                if max(w, h) > limits.max_side or w * h > limits.max_pixels:
                    raise GarmentFileRejected(
                        name, f"image is {w}x{h} px; the limit is {limits.max_side} px a side and "
                              f"{limits.max_pixels} px in all")
                if min(w, h) < limits.min_side:
                    raise GarmentFileRejected(name, f"image is {w}x{h} px; both sides must be >= {limits.min_side}")
                im.load()
                upright = ImageOps.exif_transpose(im)
                has_alpha = upright.mode in ("RGBA", "LA", "PA") or (
                    upright.mode == "P" and "transparency" in upright.info)
                rgba = np.asarray(upright.convert("RGBA" if has_alpha else "RGB"))
    except GarmentFileRejected:
        raise
    except UnidentifiedImageError as exc:
        raise GarmentFileRejected(name, "not an image (JPEG, PNG or WebP expected)") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise GarmentFileRejected(name, f"image too large to decode safely (decompression bomb guard): {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise GarmentFileRejected(name, f"truncated or corrupt image data: {exc}") from exc
    if rgba.shape[2] == 4:
        alpha = rgba[..., 3].astype(np.float32) / 255.0
        back = np.asarray(BACKDROP_RGB, np.float32)
        rgb = (rgba[..., :3] * alpha[..., None] + back * (1 - alpha[..., None]) + 0.5).astype(np.uint8)
        mask = np.where(alpha >= 0.5, 255, 0).astype(np.uint8)
        return rgb, (mask if (alpha < 0.5).mean() >= ALPHA_MASK_MIN_FRAC else None)
    return np.ascontiguousarray(rgba), None


@dataclass
class Catalog:
    """Demo garments + prepared drop-folder garments, looked up by id.

    Build with Catalog(catalog_dir, drop_dir).load(); call load() again to pick up new drops.
    """

    catalog_dir: Path
    drop_dir: Path | None = None
    limits: DropLimits = field(default_factory=DropLimits)
    generate_demo: bool = True             # write the demo catalog if it is missing or damaged
    entries: list[CatalogEntry] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    _by_id: dict[str, CatalogEntry] = field(default_factory=dict, repr=False)
    _thumbs: dict[tuple[str, int, str], bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.catalog_dir = Path(self.catalog_dir)
        self.drop_dir = Path(self.drop_dir) if self.drop_dir is not None else None

    # --- lookup ---------------------------------------------------------------------------------------
    @property
    def garments(self) -> list[Garment]:
        return [e.garment for e in self.entries]

    def get(self, garment_id: str) -> Garment:
        try:
            return self._by_id[garment_id].garment
        except KeyError:
            raise GarmentNotFound(garment_id) from None

    def __contains__(self, garment_id: object) -> bool:
        return garment_id in self._by_id

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Garment]:
        return iter(self.garments)

    def listing(self) -> list[dict[str, str]]:
        """What a web catalog shows: id, name, kind, category, source."""
        return [{"id": e.garment.id, "name": e.garment.name, "kind": e.garment.kind, "category": e.garment.category,
                 "source": e.source} for e in self.entries]

    def thumbnail(self, garment_id: str, size: int = 192, fmt: str = "JPEG") -> bytes:
        key = (garment_id, size, fmt)
        if key not in self._thumbs:
            self._thumbs[key] = thumbnail(self.get(garment_id), size, fmt)
        return self._thumbs[key]

    # --- loading --------------------------------------------------------------------------------------
    def load(self) -> Catalog:
        self.entries, self.rejected, self._by_id, self._thumbs = [], [], {}, {}
        self.stats = {"demo": 0, "prepared": 0, "cached": 0, "rejected": 0}
        self._load_demo()
        if self.drop_dir is not None:
            self._load_drops(self.drop_dir)
        self.stats["rejected"] = len(self.rejected)
        log.info("catalog: %d garments (%d demo, %d prepared now, %d from cache), %d files rejected",
                 len(self.entries), self.stats["demo"], self.stats["prepared"], self.stats["cached"],
                 len(self.rejected))
        return self

    def _add(self, entry: CatalogEntry) -> None:
        gid = entry.garment.id
        if gid in self._by_id:
            self._reject(entry.file or gid, f"duplicate of garment {self._by_id[gid].garment.name!r}")
            return
        self._by_id[gid] = entry
        self.entries.append(entry)

    def _reject(self, file: str, reason: str) -> None:
        log.warning("garment file %s rejected: %s", file, reason)
        self.rejected.append(Rejected(file, reason))

    def _load_demo(self) -> None:
        demo = self.catalog_dir / "demo"
        if not demo_catalog_valid(demo):
            if not self.generate_demo:
                log.warning("no valid demo catalog at %s (run python -m garments.demo --out %s)", demo, demo)
                return
            log.warning("demo catalog at %s missing or damaged: generating it now", demo)
            try:
                write_demo_catalog(demo, force=True)
            except OSError as exc:
                log.error("cannot write the demo catalog to %s (%s): continuing without demo garments", demo, exc)
                return
        manifest = json.loads((demo / MANIFEST_NAME).read_text())
        for item, design in zip(manifest["garments"], DEMO_DESIGNS, strict=True):
            try:
                g = load_garment(demo, landmarks=item["landmarks"], meta=item)
            except GarmentError as exc:
                self._reject(f"demo/{design.slug}", str(exc))
                continue
            self._add(CatalogEntry(g, "demo", None))
            self.stats["demo"] += 1

    def _load_drops(self, drop_dir: Path) -> None:
        if not drop_dir.is_dir():
            log.info("garment drop folder %s does not exist: no dropped garments", drop_dir)
            return
        for category in CATEGORIES:
            folder = drop_dir / DROP_SUBFOLDERS[category]
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if path.name.startswith(".") or path.suffix.lower() in IGNORED_SUFFIXES or not path.is_file():
                    continue
                rel = path.relative_to(drop_dir).as_posix()
                try:
                    entry = self._prepare_drop(path, category, rel)
                except GarmentFileRejected as exc:
                    self._reject(rel, exc.reason)
                    continue
                except GarmentError as exc:
                    self._reject(rel, str(exc))
                    continue
                self._add(entry)

    def _prepare_drop(self, path: Path, category: str = "top", rel: str | None = None) -> CatalogEntry:
        rel = rel or path.name
        try:
            size = path.stat().st_size
            if size > self.limits.max_bytes:
                raise GarmentFileRejected(path.name, f"file is {size} bytes; the limit is {self.limits.max_bytes}")
            data = path.read_bytes()
        except OSError as exc:
            raise GarmentFileRejected(path.name, f"cannot read the file: {exc.strerror or exc}") from exc
        key = hashlib.sha256(data).hexdigest()
        tag = key if category == "top" else hashlib.sha256(category.encode() + b"\0" + data).hexdigest()
        cache = self.catalog_dir / "prepared" / f"v{STORE_VERSION}-{tag}"
        if (cache / "rejected.json").is_file():
            raise GarmentFileRejected(path.name, json.loads((cache / "rejected.json").read_text())["reason"])
        if (cache / "garment.json").is_file():
            try:
                g = load_garment(cache)
                self.stats["cached"] += 1
                return CatalogEntry(g, "drop", rel)
            except GarmentError as exc:
                log.warning("prepared cache %s unusable (%s): preparing %s again", cache, exc, path.name)
        try:
            image, alpha_mask = decode_garment_file(data, path.name, self.limits)
            g = prepare_garment(image, display_name(path), mask=alpha_mask, category=category)
        except GarmentFileRejected as exc:
            self._remember_rejection(cache, exc.reason)
            raise
        except GarmentError as exc:
            reason = f"no usable garment in the photo: {exc}"
            self._remember_rejection(cache, reason)
            raise GarmentFileRejected(path.name, reason) from exc
        save_garment(g, cache, source_file=rel, source_sha256=key)
        self.stats["prepared"] += 1
        return CatalogEntry(g, "drop", rel)

    @staticmethod
    def _remember_rejection(cache: Path, reason: str) -> None:
        try:
            cache.mkdir(parents=True, exist_ok=True)
            (cache / "rejected.json").write_text(json.dumps({"reason": reason}))
        except OSError as exc:   # a read-only catalog folder only costs re-validation next time
            log.warning("cannot record rejection in %s: %s", cache, exc)


def load_catalog(catalog_dir: str | os.PathLike[str], drop_dir: str | os.PathLike[str] | None = None, *,
                 limits: DropLimits | None = None, generate_demo: bool = True) -> Catalog:
    """Catalog(catalog_dir, drop_dir, ...).load()."""
    return Catalog(Path(catalog_dir), Path(drop_dir) if drop_dir is not None else None,
                   limits=limits or DropLimits(), generate_demo=generate_demo).load()
