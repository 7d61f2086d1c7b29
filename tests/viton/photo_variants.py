"""Variants of the repo's real photos (flipped, rotated, scaled, darkened, cropped) and their real
preprocessing, cached per process: what a new user's photos vary in, made from the two photos
the repo has (skimage's astronaut and camera man).

    photo(name) -> (H, W, 3) uint8                      "astronaut" or "camera"
    variant(image, kind) -> (h, w, 3) uint8             kind in VARIANTS
    person(name, kind) -> PersonData | None             node 1's real preprocessing (None: no person found)
    demo_garments(category) -> list[(slug, GarmentData)] the demo catalog's garments of a category (tops)

Person data come from `node1.tryon.preprocess.preprocess(photo, device="cpu")`; only image, parse and
keypoints are filled (what the geometric engine reads); the person mask (and a pose picture, where
the contract still has one) are None.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from viton import GarmentData, PersonData

PHOTOS = ("astronaut", "camera")
VARIANTS = ("original", "flip", "rotate+6", "rotate-6", "scale0.6", "scale1.5", "dark", "crop")
DARK_GAIN = 0.45        # a dim room: every channel x 0.45
ROTATION_DEG = 8.0


def photo(name: str) -> np.ndarray:
    """(512, 512, 3) uint8 RGB: skimage's astronaut, or its camera man with grey copied to 3 channels."""
    from skimage import data

    if name == "astronaut":
        return np.ascontiguousarray(data.astronaut())
    if name == "camera":
        g = data.camera()
        return np.ascontiguousarray(np.stack([g, g, g], axis=-1))
    raise ValueError(f"unknown photo {name!r}; choose one of {', '.join(PHOTOS)}")


def variant(image: np.ndarray, kind: str) -> np.ndarray:
    """The photo as a new user might take it: (h, w, 3) uint8 RGB."""
    h, w = image.shape[:2]
    if kind == "original":
        return image
    if kind == "flip":
        return np.ascontiguousarray(image[:, ::-1])
    if kind.startswith("rotate"):
        m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), float(kind[len("rotate"):]), 1.0)
        return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    if kind.startswith("scale"):
        f = float(kind[len("scale"):])
        interp = cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC
        return cv2.resize(image, (int(round(w * f)), int(round(h * f))), interpolation=interp)
    if kind == "dark":
        return cv2.convertScaleAbs(image, alpha=DARK_GAIN)
    if kind == "crop":  # a tighter frame: the right 12 % and the bottom 10 % cut off
        return np.ascontiguousarray(image[: int(h * 0.9), : int(w * 0.88)])
    raise ValueError(f"unknown variant {kind!r}; choose one of {', '.join(VARIANTS)}")


@functools.cache
def person(name: str, kind: str) -> PersonData | None:
    """Real preprocessing of one photo variant (None when the pose finds nobody)."""
    from node1.pose.errors import NoPersonDetected
    from node1.tryon.preprocess import preprocess

    img = variant(photo(name), kind)
    try:
        pre = preprocess(img, device="cpu")
    except NoPersonDetected:
        return None
    return make_person(np.ascontiguousarray(pre.image), pre.parse, np.asarray(pre.body25, np.float32))


def make_person(image: np.ndarray, parse: np.ndarray, keypoints: np.ndarray) -> PersonData:
    """PersonData with only what the geometric engine reads (viton.contract.ENGINE_READS)."""
    return PersonData(image=image, parse=parse, keypoints=keypoints)


@functools.cache
def demo_garments(category: str = "top") -> tuple[tuple[str, GarmentData], ...]:
    """Every garment of the demo catalog in `category` ("top", "bottom", "dress"), rendered as the
    catalog writes it."""
    from garments import category_of
    from garments.demo import DEMO_DESIGNS, render_garment

    out = []
    for design in (d for d in DEMO_DESIGNS if category_of(d.kind) == category):
        r = render_garment(design)
        out.append((design.slug, GarmentData(image=r.image, mask=r.mask,
                                             landmarks=np.asarray(r.landmarks, np.float32), kind=design.kind)))
    return tuple(out)


def write_people(out_dir: str, cases: list[tuple[str, str]]) -> list[str]:
    """Write preprocessed photo variants in prepare-dataset's layout (PNG photos: lossless), which
    `python -m viton.gallery --people` reads. Returns the names written (variants without a person
    are left out)."""
    import json
    from pathlib import Path

    from PIL import Image

    from node1.parsing import save_parse_png
    from node1.pose import openpose_json

    out = Path(out_dir)
    for sub in ("image", "image-parse", "openpose-json"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    names = []
    for i, (name, kind) in enumerate(cases):
        p = person(name, kind)
        if p is None:
            continue
        stem = f"{i:02d}_{name}_{kind}"
        Image.fromarray(p.image).save(out / "image" / f"{stem}.png")
        save_parse_png(p.parse, out / "image-parse" / f"{stem}.png")
        (out / "openpose-json" / f"{stem}_keypoints.json").write_text(json.dumps(openpose_json(p.keypoints)))
        names.append(stem)
    return names


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="write the repo photos' variants, preprocessed, for viton.gallery")
    ap.add_argument("--out", required=True)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    a = ap.parse_args()
    kinds = [k for k in a.variants.split(",") if k]
    print("\n".join(write_people(a.out, [(n, k) for n in PHOTOS for k in kinds])))
