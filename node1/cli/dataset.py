"""prepare-dataset: photos of people x garment photos -> VITON-HD's test layout at 768x1024.

    OUT/image/<p>.jpg  image-parse/<p>.png  openpose-img/<p>_rendered.png  openpose-json/<p>_keypoints.json
    OUT/cloth/<g>.jpg  cloth-mask/<g>.jpg   test_pairs.txt  ("<p>.jpg <g>.jpg", every person x every garment)

Every photo is fitted into 768x1024 keeping its aspect ratio (padding with its own border colour, as
garments.fit_canvas does). The person is found on the photo as given (scaled to fit, not padded: a
photo padded to a tall canvas can lose its person to the detector), then the parse map (background) and
the keypoints are moved into the canvas. A file that cannot be used (not an image, no person, no garment
found) is reported and skipped; the rest are written. A photo that lacks what VITON-HD's own loader needs
(both shoulders and both hips: it divides by the hip distance, NaN without them) is written with a
warning. OUT/report.json lists people, garments, skipped files and warnings.

VITON-HD's published networks dress the upper body only: garments are prepared as tops (bottoms and
dresses are the geometric engine's; docs/vitonhd.md).
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
REPORT_NAME = "report.json"
# BODY_25 points VITON-HD's dataset loader reads for its agnostic image (it divides by the shoulder and
# hip distances): RShoulder, LShoulder, RHip, LHip
VITONHD_NEEDS = {2: "RShoulder", 5: "LShoulder", 9: "RHip", 12: "LHip"}


@dataclass
class DatasetReport:
    """What prepare-dataset wrote and what it skipped (file name -> reason)."""

    people: list[str] = field(default_factory=list)
    garments: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, str] = field(default_factory=dict)   # written person -> what VITON-HD will lack
    pairs: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"people": self.people, "garments": self.garments, "skipped": self.skipped,
                "warnings": self.warnings, "pairs": self.pairs}


def into_canvas(parse: np.ndarray, body25: np.ndarray, size: tuple[int, int] = CANVAS
                ) -> tuple[np.ndarray, np.ndarray]:
    """A (h, w) uint8 parse map and (25, 3) float32 keypoints of a photo that fits in size (W, H), moved into
    the centred canvas as garments.fit_canvas pads it: the parse padded with background (0), the found
    keypoints shifted (missing ones stay 0, 0, 0)."""
    w, h = size
    ih, iw = parse.shape
    x0, y0 = (w - iw) // 2, (h - ih) // 2
    canvas = np.zeros((h, w), np.uint8)
    canvas[y0:y0 + ih, x0:x0 + iw] = parse
    kp = np.array(body25, np.float32, copy=True)
    found = (kp[:, 2] > 0) & ~((kp[:, 0] == 0) & (kp[:, 1] == 0))
    kp[found, 0] += x0
    kp[found, 1] += y0
    kp[~found] = 0.0
    return canvas, kp


def vitonhd_warning(body25: np.ndarray) -> str | None:
    """What VITON-HD's loader will lack in these keypoints, or None when it has all it needs."""
    kp = np.asarray(body25, np.float64)
    missing = [name for i, name in VITONHD_NEEDS.items() if kp[i, 2] <= 0 or (kp[i, 0] == 0 and kp[i, 1] == 0)]
    if missing:
        return (f"no {', '.join(missing)} in the photo: VITON-HD's dataset loader divides by the shoulder and hip "
                "distances and its agnostic image becomes NaN; use a photo showing the hips, or the geometric "
                "engine")
    if float(np.hypot(*(kp[12, :2] - kp[9, :2]))) < 1.0:
        return "the hips lie on one spot: VITON-HD's loader divides by their distance (NaN)"
    return None


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
    from garments import GarmentError, fit_canvas, prepare_garment, scale_into
    from node1.pose import PoseError, openpose_json
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
            scaled = scale_into(read_rgb(path), CANVAS)   # as fit_canvas scales before it pads
            pre = preprocess(scaled, device)   # on the photo as given: no padding for the detector to miss
        except (ValueError, PoseError) as exc:
            rep.skipped[str(path)] = str(exc)
            report(f"skip {path.name}: {exc}")
            continue
        name = _unique_stem(path, used)
        img = fit_canvas(np.asarray(pre.image), CANVAS)
        parse, body25 = into_canvas(pre.parse, pre.body25, CANVAS)
        Image.fromarray(img).save(out / "image" / f"{name}.jpg", quality=JPEG_QUALITY)
        save_parse_png(parse, out / "image-parse" / f"{name}.png")
        skeleton = render_skeleton(body25, img.shape[:2])
        Image.fromarray(skeleton).save(out / "openpose-img" / f"{name}_rendered.png")
        (out / "openpose-json" / f"{name}_keypoints.json").write_text(json.dumps(openpose_json(body25)),
                                                                      encoding="utf-8")
        rep.people.append(f"{name}.jpg")
        report(f"person {path.name} -> image/{name}.jpg ({pre.timings_ms['total']:.0f} ms on {pre.device})")
        warning = vitonhd_warning(body25)
        if warning is not None:
            rep.warnings[f"{name}.jpg"] = warning
            report(f"warning {path.name}: {warning}")
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
    (out / REPORT_NAME).write_text(json.dumps(rep.as_json(), indent=1), encoding="utf-8")
    if not rep.people:
        raise DatasetError(f"no usable photo of a person in {photos} ({len(rep.skipped)} skipped)")
    if not rep.garments:
        raise DatasetError(f"no usable garment photo in {garments_dir} ({len(rep.skipped)} skipped)")
    return rep
