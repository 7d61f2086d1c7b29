"""Contact sheet: photos x garments in one PNG grid, each photo beside its try-ons, for a person to
judge the engine at a glance.

    python -m viton.gallery --people DIR --catalog DIR --out SHEET.png [--garments SLUG,...] [--cell PX]

--people: preprocessed people in the layout `python -m node1.cli prepare-dataset` writes (VITON-HD's):
    DIR/image/<p>.png|.jpg (RGB photo), DIR/image-parse/<p>.png (CIHP-20 labels, palette PNG),
    DIR/openpose-json/<p>_keypoints.json (OpenPose BODY_25, the first person)
--catalog: a garment catalog folder (manifest.json + <slug>.png + <slug>_mask.png, as
    `python -m garments.demo --out DIR` writes; default var/catalog/demo)

viton reads these files itself (it never imports node 1); the engine is the geometric one.
Exit codes: 0 written, 2 bad input (the message names the file and what is wrong).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from garments.types import category_of, landmark_names
from viton.engine import Engine, GarmentData, PersonData
from viton.errors import LegsNotInView, VitonError
from viton.geometric import GeometricEngine

DEFAULT_CELL_PX = 256
LABEL_BAND_PX = 22
BACKGROUND = (245, 245, 245)
EXIT_OK, EXIT_BAD_INPUT = 0, 2


class GalleryInputError(VitonError):
    """A people or catalog folder cannot be read: the message names the file and the fault."""

    code = "gallery_input"


def _rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
    except (OSError, ValueError) as exc:
        raise GalleryInputError(f"{path}: cannot read the image ({exc})") from exc


def load_people(folder: Path) -> list[tuple[str, PersonData]]:
    """(name, PersonData with image, parse, keypoints) for every photo of a prepare-dataset folder."""
    images = sorted(p for p in (folder / "image").glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not images:
        raise GalleryInputError(f"{folder / 'image'}: no .png/.jpg photo; run `python -m node1.cli prepare-dataset` "
                                "(or tests/viton/photo_variants.py --out DIR) to make a people folder")
    people = []
    for img_path in images:
        name = img_path.stem
        parse_path = folder / "image-parse" / f"{name}.png"
        kp_path = folder / "openpose-json" / f"{name}_keypoints.json"
        for p in (parse_path, kp_path):
            if not p.is_file():
                raise GalleryInputError(f"{p}: missing (each photo needs its parse PNG and keypoints JSON)")
        with Image.open(parse_path) as pim:
            if pim.mode not in ("P", "L"):
                raise GalleryInputError(f"{parse_path}: a parse PNG must be mode 'P' or 'L', got {pim.mode!r}")
            parse = np.asarray(pim, dtype=np.uint8).copy()
        try:
            flat = json.loads(kp_path.read_text(encoding="utf-8"))["people"][0]["pose_keypoints_2d"]
            keypoints = np.asarray(flat, dtype=np.float32).reshape(25, 3)
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise GalleryInputError(f"{kp_path}: not an OpenPose BODY_25 file with one person ({exc})") from exc
        image = _rgb(img_path)
        if image.shape[:2] != parse.shape:
            raise GalleryInputError(f"{parse_path}: parse is {parse.shape}, its photo {image.shape[:2]}")
        people.append((name, PersonData(image=image, parse=parse, keypoints=keypoints)))  # what the engine reads
    return people


def load_catalog(folder: Path, slugs: list[str] | None = None) -> list[tuple[str, GarmentData]]:
    """(slug, GarmentData) for the catalog's garments (all, or `slugs` in that order)."""
    manifest = folder / "manifest.json"
    try:
        entries = {g["slug"]: g for g in json.loads(manifest.read_text(encoding="utf-8"))["garments"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GalleryInputError(f"{manifest}: not a garment catalog manifest ({exc})") from exc
    unknown = [s for s in slugs or [] if s not in entries]
    if unknown:
        raise GalleryInputError(f"{manifest}: no garment {', '.join(unknown)}; it has {', '.join(entries)}")
    out = []
    for slug in slugs or list(entries):
        e = entries[slug]
        try:
            mask = _rgb(folder / e["mask"])[..., 0]
            names = landmark_names(category_of(str(e["kind"])))
            lm = np.array([e["landmarks"][n] for n in names], dtype=np.float32).reshape(len(names), 2)
            out.append((slug, GarmentData(image=_rgb(folder / e["image"]), mask=mask, landmarks=lm, kind=e["kind"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise GalleryInputError(f"{manifest}: garment {slug!r} lacks a valid {exc} (image, mask, kind, "
                                    "and the landmarks of its category)") from exc
    return out


def _fit(img: np.ndarray, cell: int) -> np.ndarray:
    """(cell, cell, 3) uint8: `img` scaled to fit, centred on the sheet's background."""
    h, w = img.shape[:2]
    f = cell / max(h, w)
    size = (max(int(round(w * f)), 1), max(int(round(h * f)), 1))
    small = cv2.resize(img, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    out = np.full((cell, cell, 3), BACKGROUND, np.uint8)
    y, x = (cell - size[1]) // 2, (cell - size[0]) // 2
    out[y:y + size[1], x:x + size[0]] = small
    return out


def _label(img: np.ndarray, text: str) -> np.ndarray:
    band = np.full((LABEL_BAND_PX, img.shape[1], 3), BACKGROUND, np.uint8)
    cv2.putText(band, text[:40], (4, LABEL_BAND_PX - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (40, 40, 40), 1, cv2.LINE_AA)
    return np.concatenate([band, img], axis=0)


def contact_sheet(people: list[tuple[str, PersonData]], garments: list[tuple[str, GarmentData]],
                  engine: Engine | None = None, cell: int = DEFAULT_CELL_PX) -> np.ndarray:
    """(rows, cols, 3) uint8 RGB grid: a header row of the garments, then per person the photo and
    one try-on per garment, each cell `cell` px square with a label band above it."""
    engine = engine or GeometricEngine()
    blank = np.full((cell, cell, 3), BACKGROUND, np.uint8)
    rows = [np.concatenate([_label(blank, "photo \\ garment")]
                           + [_label(_fit(g.image, cell), slug) for slug, g in garments], axis=1)]
    for name, person in people:
        cells = [_label(_fit(person.image, cell), name)]
        for slug, g in garments:
            try:
                cells.append(_label(_fit(engine.try_on(person, g).image, cell), f"{name} + {slug}"))
            except LegsNotInView:   # a bottom or a dress on a photo cut at the waist: the photo, dimmed
                dim = (_fit(person.image, cell) * 0.35 + np.asarray(BACKGROUND) * 0.65).astype(np.uint8)
                cells.append(_label(dim, f"{slug}: legs not in view"))
        rows.append(np.concatenate(cells, axis=1))
    return np.concatenate(rows, axis=0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m viton.gallery", description=__doc__.split("\n")[0])
    ap.add_argument("--people", type=Path, required=True, help="prepare-dataset folder (image/, image-parse/, ...)")
    ap.add_argument("--catalog", type=Path, default=Path("var/catalog/demo"), help="garment catalog folder")
    ap.add_argument("--garments", default="", help="comma-separated slugs (default: all)")
    ap.add_argument("--cell", type=int, default=DEFAULT_CELL_PX, help="cell side in px")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        if not 32 <= args.cell <= 1024:
            raise GalleryInputError(f"--cell must be in 32..1024 px; got {args.cell}")
        people = load_people(args.people)
        garments = load_catalog(args.catalog, [s for s in args.garments.split(",") if s] or None)
        sheet = contact_sheet(people, garments, cell=args.cell)
    except VitonError as exc:
        print(f"viton.gallery: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(args.out, optimize=True)
    print(f"wrote {args.out}: {len(people)} photos x {len(garments)} garments, "
          f"{sheet.shape[1]}x{sheet.shape[0]} px, {time.perf_counter() - t0:.1f} s")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
