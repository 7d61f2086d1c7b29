"""Preparing a garment photo (mask + landmarks + id), storing/loading prepared garments, thumbnails."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from garments.errors import GarmentError, InvalidGarmentImage
from garments.landmarks import LandmarkResult, find_landmarks
from garments.lower_landmarks import find_bottom_landmarks, find_dress_landmarks
from garments.mask import check_rgb, cloth_mask, fill_holes, keep_largest_component
from garments.types import CATEGORIES, Garment, category_of, content_id, landmark_names

CANVAS_SIZE = (768, 1024)          # (W, H) of prepared garments, VITON-HD's cloth images
THUMBNAIL_PX = 192                 # longest side of a catalog thumbnail
THUMBNAIL_MARGIN = 0.04            # margin around the garment's box, as a fraction of its larger side
JPEG_QUALITY = 85
STORE_VERSION = 2                  # layout of garment.json; bump to invalidate prepared caches

# Counts real preparations (mask + landmarks computed); tests use it to prove caches are hit.
PREPARE_CALLS = {"count": 0}


def scale_into(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize keeping the aspect ratio so the image just fits inside size (W, H): area filter down, cubic up;
    a (H, W) mask is resampled and thresholded back to {0, 255}."""
    w, h = size
    ih, iw = image.shape[:2]
    s = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * s)), max(1, round(ih * s))
    if (nw, nh) == (iw, ih):
        return image
    if image.ndim == 2:
        return np.where(cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) >= 128, 255, 0).astype(np.uint8)
    return cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)


def _border_colour(image: np.ndarray) -> tuple[int, ...]:
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]], axis=0)
    return tuple(int(v) for v in np.median(border, axis=0).reshape(-1))


def _pad_to(image: np.ndarray, size: tuple[int, int], fill: tuple[int, ...]) -> np.ndarray:
    w, h = size
    ih, iw = image.shape[:2]
    if (iw, ih) == (w, h):
        return image
    canvas = np.empty((h, w) + image.shape[2:], image.dtype)
    canvas[:] = np.asarray(fill, image.dtype).reshape((1, 1) + image.shape[2:]) if image.ndim == 3 else fill[0]
    x0, y0 = (w - iw) // 2, (h - ih) // 2
    canvas[y0 : y0 + ih, x0 : x0 + iw] = image
    return canvas


def fit_canvas(image: np.ndarray, size: tuple[int, int] = CANVAS_SIZE, fill: tuple[int, ...] | None = None
               ) -> np.ndarray:
    """Scale image to fit inside size (W, H) keeping its aspect ratio, centred on a canvas filled with `fill`
    (default: the median colour of the image border, i.e. the backdrop). Works for (H, W, 3) and (H, W)."""
    scaled = scale_into(image, size)
    return _pad_to(scaled, size, fill if fill is not None else _border_colour(scaled))


def find_category_landmarks(mask: np.ndarray, category: str = "top") -> LandmarkResult:
    """Landmarks of a (H, W) uint8 cloth mask as a garment of `category` ("top", "bottom", "dress").

    Raises:
        InvalidGarmentImage: an unknown category. LandmarkError: the silhouette is not one of that category.
    """
    if category not in CATEGORIES:
        raise InvalidGarmentImage(f"garment category {category!r} is not one of {', '.join(CATEGORIES)}")
    if category == "bottom":
        return find_bottom_landmarks(mask)
    if category == "dress":
        return find_dress_landmarks(mask)
    return find_landmarks(mask)


def prepare_garment(image: np.ndarray, name: str, *, kind: str | None = None, mask: np.ndarray | None = None,
                    canvas: tuple[int, int] | None = CANVAS_SIZE, category: str = "top") -> Garment:
    """Mask, landmarks and id of one garment photo.

    Args:
        image: (H, W, 3) uint8 RGB, the garment on a plain backdrop (front view, upright).
        name: display name.
        kind: shape family to record (one of `category`'s); None = as told by the silhouette ("tank",
            "tshirt", "longsleeve", "hoodie"; "trousers", "shorts", "skirt"; "dress").
        mask: (H, W) uint8 cloth mask if already known (e.g. from a PNG's alpha); None = cloth_mask(image).
        canvas: (W, H) every prepared garment is fitted to (VITON-HD's 768x1024); None keeps the photo's size.
        category: "top", "bottom" or "dress": which landmarks to find (garments.types.landmark_names).
    Returns:
        Garment with id = content_id(image, mask) of the stored (fitted) image and mask.
    Raises:
        InvalidGarmentImage (also: an unknown category, a kind of another category), NoGarmentFound,
        LandmarkError (the silhouette is not a garment of that category; all GarmentError).
    """
    check_rgb(image)
    if category not in CATEGORIES:
        raise InvalidGarmentImage(f"garment category {category!r} is not one of {', '.join(CATEGORIES)}")
    if kind is not None and category_of(kind) != category:
        raise InvalidGarmentImage(f"garment kind {kind!r} is a {category_of(kind)}, not a {category}")
    if mask is not None and (mask.shape != image.shape[:2] or mask.dtype != np.uint8):
        raise InvalidGarmentImage(f"mask must be {image.shape[:2]} uint8, got {mask.shape} {mask.dtype}")
    if canvas is not None:   # scale now, pad after the mask: the mask reads the photo's own border
        image = scale_into(image, canvas)
        mask = scale_into(mask, canvas) if mask is not None else None
    PREPARE_CALLS["count"] += 1
    if mask is None:
        mask = cloth_mask(image)
    else:
        mask = fill_holes(keep_largest_component(np.where(mask >= 128, 255, 0).astype(np.uint8)))
    if canvas is not None:
        image = _pad_to(image, canvas, _border_colour(image))
        mask = _pad_to(mask, canvas, (0,))
    found = find_category_landmarks(mask, category)
    image = np.ascontiguousarray(image)
    return Garment(id=content_id(image, mask), name=name, image=image, mask=mask, landmarks=found.points,
                   kind=kind or found.kind)


def thumbnail(garment: Garment, size: int = THUMBNAIL_PX, fmt: str = "JPEG") -> bytes:
    """A small picture of the garment cropped to its mask's box (longest side = size px), JPEG or PNG bytes."""
    if fmt not in ("JPEG", "PNG"):
        raise ValueError(f"thumbnail format must be 'JPEG' or 'PNG', got {fmt!r}")
    ys, xs = np.nonzero(garment.mask >= 128)
    h, w = garment.mask.shape
    if ys.size:
        pad = int(THUMBNAIL_MARGIN * max(np.ptp(ys) + 1, np.ptp(xs) + 1))
        y0, y1 = max(int(ys.min()) - pad, 0), min(int(ys.max()) + pad + 1, h)
        x0, x1 = max(int(xs.min()) - pad, 0), min(int(xs.max()) + pad + 1, w)
    else:
        y0, y1, x0, x1 = 0, h, 0, w
    crop = Image.fromarray(garment.image[y0:y1, x0:x1])
    crop.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    crop.save(buf, format=fmt, **({"quality": JPEG_QUALITY, "optimize": True} if fmt == "JPEG" else {}))
    return buf.getvalue()


def save_garment(garment: Garment, folder: str | os.PathLike[str], **extra: object) -> None:
    """Store a prepared garment (image.png, mask.png, garment.json) atomically into folder (created)."""
    dest = Path(folder)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".prep-", dir=dest.parent))
    ok1, img = cv2.imencode(".png", np.ascontiguousarray(garment.image[..., ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    ok2, msk = cv2.imencode(".png", garment.mask, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not (ok1 and ok2):
        raise OSError(f"could not encode garment {garment.id} as PNG")
    (tmp / "image.png").write_bytes(img.tobytes())
    (tmp / "mask.png").write_bytes(msk.tobytes())
    meta = {"store_version": STORE_VERSION, "id": garment.id, "name": garment.name, "kind": garment.kind,
            "category": garment.category,
            "landmarks": {n: [float(x), float(y)] for n, (x, y) in zip(landmark_names(garment.category),
                                                                        garment.landmarks, strict=True)}, **extra}
    (tmp / "garment.json").write_text(json.dumps(meta, indent=1))
    os.chmod(tmp, 0o755)  # noqa: S103 (mkdtemp makes 0700; the web app may run as another user)
    try:
        tmp.rename(dest)
    except OSError:       # another process stored the same garment first: keep theirs
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()


def load_garment(folder: str | os.PathLike[str], landmarks: dict[str, list[float]] | None = None,
                 meta: dict[str, object] | None = None) -> Garment:
    """Load a stored garment (image.png, mask.png and garment.json, or the given meta/landmarks) and check that
    its id still matches its content. Raises GarmentError when a file is missing, unreadable or altered."""
    root = Path(folder)
    try:
        if meta is None:
            meta = json.loads((root / "garment.json").read_text())
        image_file, mask_file = str(meta.get("image", "image.png")), str(meta.get("mask", "mask.png"))
        bgr = cv2.imread(str(root / image_file), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(root / mask_file), cv2.IMREAD_GRAYSCALE)
        if bgr is None or mask is None:
            raise GarmentError(f"{root}: cannot read {image_file} or {mask_file}")
        image = np.ascontiguousarray(bgr[..., ::-1])
        lm_src = landmarks if landmarks is not None else meta["landmarks"]
        if not isinstance(lm_src, dict):
            raise GarmentError(f"{root}: landmarks must be an object of name -> [x, y]")
        kind = str(meta.get("kind", "tshirt"))
        points = np.array([lm_src[n] for n in landmark_names(category_of(kind))], np.float32)
        gid = content_id(image, mask)
        if gid != meta["id"]:
            raise GarmentError(f"{root}: content changed since it was prepared "
                               f"(id {gid[:12]} != {str(meta['id'])[:12]})")
        return Garment(id=gid, name=str(meta["name"]), image=image, mask=mask, landmarks=points, kind=kind)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GarmentError(f"{root}: cannot load the prepared garment: {exc}") from exc
