"""Painting a garment shape into a product photo: fabric, shading, folds, seams, details, background, shadow.

All arrays are (H, W) or (H, W, 3) float32 in [0, 1] unless stated; colours are RGB. Everything is
vectorised numpy/OpenCV so a 768x1024 garment renders in a few hundred milliseconds.
"""

from __future__ import annotations

import cv2
import numpy as np

from garments.demo.shapes import Shape, mirror_part

AA_SHIFT = 4               # fixed-point bits for sub-pixel cv2 drawing
AA_SCALE = 1 << AA_SHIFT
FOLD_GRID = 4              # folds are computed at 1/4 resolution (they are smooth) and upsampled


def _fx(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points, dtype=np.float64) * AA_SCALE).astype(np.int32).reshape(-1, 1, 2)


def fill_alpha(outline: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Anti-aliased coverage of a closed polygon: (H, W) float32 in [0, 1]; size is (W, H)."""
    w, h = size
    canvas = np.zeros((h, w), np.uint8)
    cv2.fillPoly(canvas, [_fx(outline)], 255, lineType=cv2.LINE_AA, shift=AA_SHIFT)
    return canvas.astype(np.float32) / 255.0


def stroke(size: tuple[int, int], lines: list[np.ndarray], width: int, closed: bool = False) -> np.ndarray:
    """Anti-aliased polylines: (H, W) float32 coverage in [0, 1]."""
    w, h = size
    canvas = np.zeros((h, w), np.uint8)
    cv2.polylines(canvas, [_fx(p) for p in lines], closed, 255, width, cv2.LINE_AA, AA_SHIFT)
    return canvas.astype(np.float32) / 255.0


def dashed(points: np.ndarray, dash: float = 7.0, gap: float = 4.0) -> list[np.ndarray]:
    """Split a polyline into dashes (stitching)."""
    p = np.asarray(points, dtype=np.float64)
    seg = np.hypot(*np.diff(p, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] <= 0:
        return []
    t = np.arange(0.0, s[-1], 0.5)
    dense = np.stack([np.interp(t, s, p[:, 0]), np.interp(t, s, p[:, 1])], axis=1)
    on = (t % (dash + gap)) < dash
    starts = np.flatnonzero(on & ~np.concatenate([[False], on[:-1]]))
    ends = np.flatnonzero(on & ~np.concatenate([on[1:], [False]]))
    return [dense[a : b + 1] for a, b in zip(starts, ends, strict=True) if b > a]


def offset_line(points: np.ndarray, dist: float) -> np.ndarray:
    """Polyline moved `dist` px to the left of its travel direction (per-vertex normals)."""
    p = np.asarray(points, dtype=np.float64)
    d = np.gradient(p, axis=0)
    n = np.stack([d[:, 1], -d[:, 0]], axis=1)
    n /= np.maximum(np.hypot(n[:, 0], n[:, 1]), 1e-9)[:, None]
    return p + n * dist


def both_sides(shape: Shape, pts: np.ndarray) -> list[np.ndarray]:
    return [pts, mirror_part(pts, shape.cx)]


def fold_field(shape: Shape, size: tuple[int, int], rng: np.random.Generator, count: int = 9) -> np.ndarray:
    """Soft ridges and valleys (drape folds): (H, W) float32 roughly in [-1, 1]."""
    w, h = size
    gw, gh = w // FOLD_GRID, h // FOLD_GRID
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32) * FOLD_GRID
    out = np.zeros((gh, gw), np.float32)
    lm = shape.landmarks
    cx = shape.cx
    seeds: list[tuple[np.ndarray, np.ndarray, float]] = []
    for side in (-1, 1):  # diagonal drag folds from the armpits toward the middle
        a = lm[3 if side < 0 else 4]
        for k in range(2):
            start = a + np.array([-side * 8.0, 20.0 + 45 * k])
            end = np.array([cx + side * rng.uniform(10, 80), a[1] + rng.uniform(180, 320)])
            seeds.append((start, end, rng.uniform(0.5, 0.9) * (1 if k == 0 else -0.7)))
    hem_y = float(lm[5][1])
    for _ in range(count - len(seeds)):  # loose vertical and near-hem folds
        x0 = cx + rng.uniform(-150, 150)
        y0 = rng.uniform(shape.props.armpit_y + 40, hem_y - 60)
        start = np.array([x0, y0])
        end = start + np.array([rng.uniform(-40, 40), rng.uniform(90, 220)])
        seeds.append((start, end, rng.uniform(-0.7, 0.7)))
    for start, end, amp in seeds:
        d = end - start
        L2 = float(d @ d) + 1e-6
        t = np.clip(((xx - start[0]) * d[0] + (yy - start[1]) * d[1]) / L2, 0, 1)
        dist2 = (xx - start[0] - t * d[0]) ** 2 + (yy - start[1] - t * d[1]) ** 2
        width = 14.0 + 10.0 * abs(amp)
        taper = np.sin(np.pi * np.clip(t, 0.02, 0.98)) ** 0.6
        out += amp * taper * np.exp(-dist2 / (2 * width**2))
    return cv2.resize(out, (w, h), interpolation=cv2.INTER_CUBIC)


def fabric_texture(size: tuple[int, int], rng: np.random.Generator, weave: str) -> np.ndarray:
    """Multiplicative fabric texture around 1.0: (H, W) float32."""
    w, h = size
    noise = rng.standard_normal((h, w)).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if weave == "twill":      # woven shirting: fine diagonal ribs
        pattern = 0.022 * np.sin(2 * np.pi * (xx + yy) / 4.0)
        noise = cv2.GaussianBlur(noise, (0, 0), 0.7) * 0.03
    elif weave == "fleece":   # brushed fleece: soft blotchy grain
        pattern = 0.0 * xx
        noise = cv2.GaussianBlur(noise, (0, 0), 1.6) * 0.09
    elif weave == "rib":      # rib knit: pronounced vertical ribs
        pattern = 0.035 * np.sin(2 * np.pi * xx / 5.0)
        noise = cv2.GaussianBlur(noise, (0, 0), 0.8) * 0.03
    else:                     # jersey: tiny vertical wales
        pattern = 0.014 * np.sin(2 * np.pi * xx / 3.3)
        noise = cv2.GaussianBlur(noise, (0, 0), 0.8) * 0.035
    return (1.0 + pattern + noise).astype(np.float32)


def edge_distance(alpha: np.ndarray) -> np.ndarray:
    inside = (alpha >= 0.5).astype(np.uint8)
    return cv2.distanceTransform(inside, cv2.DIST_L2, 5).astype(np.float32)


def background(size: tuple[int, int], colour: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Off-white studio backdrop with a gentle light falloff and paper grain: (H, W, 3) float32."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w * 0.45) / w) ** 2 + ((yy - h * 0.4) / h) ** 2
    light = 1.0 + 0.025 - 0.07 * r2
    grain = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 0.8) * 0.006
    base = np.asarray(colour, np.float32) / 255.0
    return np.clip(base[None, None, :] * (light + grain)[..., None], 0, 1)


def drop_shadow(alpha: np.ndarray, strength: float, offset: tuple[int, int] = (9, 14)) -> np.ndarray:
    """Soft shadow the garment casts on the backdrop: (H, W) float32 darkening factor in [0, 1]."""
    h, w = alpha.shape
    small = cv2.resize(alpha, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    m = np.array([[1, 0, offset[0] / 4], [0, 1, offset[1] / 4]], np.float32)
    small = cv2.warpAffine(small, m, (w // 4, h // 4))
    wide = cv2.GaussianBlur(small, (0, 0), 5.0)
    tight = cv2.GaussianBlur(alpha, (0, 0), 2.5)
    wide = cv2.resize(wide, (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(strength * wide + 0.35 * strength * tight, 0, 0.9)
