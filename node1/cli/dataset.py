"""prepare-dataset: photos of people x garment photos -> VITON-HD's test layout at 768x1024.

    OUT/image/<p>.jpg  image-parse/<p>.png  openpose-img/<p>_rendered.png  openpose-json/<p>_keypoints.json
    OUT/cloth/<g>.jpg  cloth-mask/<g>.jpg   test_pairs.txt  ("<p>.jpg <g>.jpg", every person x every garment)

Every photo is fitted into 768x1024 keeping its aspect ratio (padding with its own border colour, as
garments.fit_canvas does). A file that cannot be used (not an image, no person, no garment found) is
reported and skipped; the rest are written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from node1.parsing.errors import DatasetError
from node1.parsing.labels import save_parse_png
from viton.skeleton import render_skeleton

log = logging.getLogger("node1.cli.dataset")

CANVAS = (768, 1024)                 # (W, H), VITON-HD's load size
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
JPEG_QUALITY = 95
MAX_IMAGE_PIXELS = 40_000_000        # refuse decompression bombs (PIL's own guard stays on too)
SUBDIRS = ("image", "cloth", "cloth-mask", "image-parse", "openpose-img", "openpose-json")


@dataclass
class DatasetReport:
    """What prepare-dataset wrote and what it skipped (file name -> reason)."""

    people: list[str] = field(default_factory=list)
    garments: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    pairs: int = 0


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file, EXIF orientation applied. Raises ValueError naming the problem."""
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"{img.width}x{img.height} px is over the {MAX_IMAGE_PIXELS} pixel limit")
            return np.asarray(ImageOps.exif_transpose(img).convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"not a readable image ({exc.__class__.__name__}: {exc})") from exc


def _images(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise DatasetError(f"--{what} {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DatasetError(f"--{what} {folder} holds no files")
    return files


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, k = path.stem, 1
    while stem in used:
        k += 1
        stem = f"{path.stem}_{k}"
    used.add(stem)
    return stem


def prepare_dataset(photos: Path, garments_dir: Path, out: Path, device: Any = "cpu",
                    report: Callable[[str], None] = print) -> DatasetReport:
    """Write VITON-HD's test layout (see the module docstring). Returns what was written and skipped.

    Raises:
        DatasetError: a folder is missing or empty, or nothing usable was found in one of them.
    """
    from garments import GarmentError, fit_canvas, prepare_garment
    from node1.pose import PoseError
    from node1.tryon.preprocess import preprocess

    person_files, garment_files = _images(photos, "photos"), _images(garments_dir, "garments")
    for sub in SUBDIRS:
        (out / sub).mkdir(parents=True, exist_ok=True)
    rep = DatasetReport()
    used: set[str] = set()
    for path in person_files:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            rep.skipped[str(path)] = f"not an image file ({path.suffix or 'no suffix'})"
            continue
        try:
            img = fit_canvas(read_rgb(path), CANVAS)
            pre = preprocess(img, device)
        except (ValueError, PoseError) as exc:
            rep.skipped[str(path)] = str(exc)
            report(f"skip {path.name}: {exc}")
            continue
        name = _unique_stem(path, used)
        Image.fromarray(pre.image).save(out / "image" / f"{name}.jpg", quality=JPEG_QUALITY)
        save_parse_png(pre.parse, out / "image-parse" / f"{name}.png")
        skeleton = render_skeleton(pre.body25, pre.image.shape[:2])
        Image.fromarray(skeleton).save(out / "openpose-img" / f"{name}_rendered.png")
        (out / "openpose-json" / f"{name}_keypoints.json").write_text(json.dumps(pre.pose_json), encoding="utf-8")
        rep.people.append(f"{name}.jpg")
        report(f"person {path.name} -> image/{name}.jpg ({pre.timings_ms['total']:.0f} ms on {pre.device})")
    used = set()
    for path in garment_files:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            rep.skipped[str(path)] = f"not an image file ({path.suffix or 'no suffix'})"
            continue
        try:
            g = prepare_garment(read_rgb(path), path.stem, canvas=CANVAS)
        except (ValueError, GarmentError) as exc:
            rep.skipped[str(path)] = str(exc)
            report(f"skip {path.name}: {exc}")
            continue
        name = _unique_stem(path, used)
        Image.fromarray(g.image).save(out / "cloth" / f"{name}.jpg", quality=JPEG_QUALITY)
        Image.fromarray(g.mask).save(out / "cloth-mask" / f"{name}.jpg", quality=JPEG_QUALITY)
        rep.garments.append(f"{name}.jpg")
        report(f"garment {path.name} -> cloth/{name}.jpg ({g.kind})")
    lines = [f"{p} {g}\n" for p in rep.people for g in rep.garments]
    (out / "test_pairs.txt").write_text("".join(lines), encoding="utf-8")
    rep.pairs = len(lines)
    if not rep.people:
        raise DatasetError(f"no usable photo of a person in {photos} ({len(rep.skipped)} skipped)")
    if not rep.garments:
        raise DatasetError(f"no usable garment photo in {garments_dir} ({len(rep.skipped)} skipped)")
    return rep
