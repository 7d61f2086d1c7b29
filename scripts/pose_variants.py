"""Fifteen variants of each pose-oracle photo, made the same way in any venv (numpy + OpenCV).

    variants(image) -> list[(name, (H, W, 3) uint8)]   the photo itself, 4 scales, 3 paddings, 2 crops,
                                                       2 gammas, 2 small rotations, a JPEG round trip
    digest(image) -> str                               sha256 of shape + pixels

scripts/make_pose_oracle.py --variants runs mediapipe on them once (tests/data/pose_oracle_variants.json
keeps each variant's digest); tests/pose/test_pose_variants.py rebuilds them here and checks the digests
first, so an OpenCV that resizes or encodes differently is an error, not a silent change of the test.
Rotations are nearest-neighbour in numpy (OpenCV 4.11's and 5.0's warpAffine differ by up to 4 grey levels).
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np

SCALES = (0.7, 0.85, 1.2, 1.4)
PADS = ((13, 0), (0, 29), (57, 31))  # (left, top) px of grey (127)
CROPS = ((0.05, 0.0, 0.0, 0.05), (0.0, 0.04, 0.06, 0.0))  # fractions cut from (top, bottom, left, right)
GAMMAS = (0.8, 1.25)
ANGLES_DEG = (-4.0, 4.0)
JPEG_QUALITY = 90


def digest(image: np.ndarray) -> str:
    return hashlib.sha256(repr(image.shape).encode() + np.ascontiguousarray(image).tobytes()).hexdigest()


def rotate_nearest(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate about the centre (counter-clockwise for positive degrees), nearest pixel, edges mirrored."""
    h, w = image.shape[:2]
    a = np.deg2rad(degrees)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    sx = np.cos(a) * (xx - cx) - np.sin(a) * (yy - cy) + cx
    sy = np.sin(a) * (xx - cx) + np.cos(a) * (yy - cy) + cy
    ix = np.rint(sx).astype(np.int64)
    iy = np.rint(sy).astype(np.int64)
    ix = np.abs(ix) % (2 * w)  # mirror at the edges
    iy = np.abs(iy) % (2 * h)
    ix = np.where(ix >= w, 2 * w - 1 - ix, ix)
    iy = np.where(iy >= h, 2 * h - 1 - iy, iy)
    return np.ascontiguousarray(image[iy, ix])


def variants(image: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(name, (H, W, 3) uint8 RGB) pairs; the first is ``image`` itself."""
    h, w = image.shape[:2]
    out: list[tuple[str, np.ndarray]] = [("orig", image)]
    for s in SCALES:
        size = (round(w * s), round(h * s))
        out.append((f"scale{s}", cv2.resize(image, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)))
    for left, top in PADS:
        out.append((f"pad{left}_{top}", cv2.copyMakeBorder(image, top, 0, left, 0, cv2.BORDER_CONSTANT,
                                                           value=(127, 127, 127))))
    for t, b, lf, r in CROPS:
        out.append((f"crop{t}_{b}_{lf}_{r}", image[round(h * t):h - round(h * b), round(w * lf):w - round(w * r)]))
    for g in GAMMAS:
        lut = np.clip(255 * (np.arange(256) / 255) ** g + 0.5, 0, 255).astype(np.uint8)
        out.append((f"gamma{g}", lut[image]))
    for deg in ANGLES_DEG:
        out.append((f"rot{deg:g}", rotate_nearest(image, deg)))
    ok, buf = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:
        raise RuntimeError("OpenCV could not decode its own JPEG")
    out.append((f"jpeg{JPEG_QUALITY}", decoded[:, :, ::-1]))
    return [(name, np.ascontiguousarray(v)) for name, v in out]
