"""Shading, not albedo: the low-frequency light of the old clothes (folds, shadows), without their
colour or pattern (logos, collars, badges, stripes).

Method, on a grid of cells of SHADE_CELL x body scale (about 8 px on a 512 px photo):
    1. cell luminance = mean over the old clothes' pixels in the cell (no background bleeds in);
    2. the local material level = median of the cells' log luminance over a window of
       LEVEL_WINDOW x body scale: a collar, a badge or a stripe smaller than half the window
       does not move it;
    3. cells more than ALBEDO_JUMP brighter or darker than that level are another material (a
       white collar on a navy jacket, a badge): they carry no shading;
    4. shading = the remaining cells' deviation from the level, smoothed over FOLD_SMOOTH cells, plus
       the level's own large-scale variation (one side of the body in shadow), damped and
       clipped; exp() of it, clipped to SHADE_RANGE.
Cost: a few small-grid operations and one bilinear upsampling of the box.
"""

from __future__ import annotations

import cv2
import numpy as np

SHADE_CELL = 0.04             # x body scale: cell side of the shading grid
MIN_CELL_PX = 2
LEVEL_WINDOW = 0.5            # x body scale: window of the local material level (median)
ALBEDO_JUMP = np.log(1.6)     # |log luminance - level| beyond this: another material, not shading
MIN_CLOTH_IN_CELL = 0.5       # a cell counts when this fraction of it is old clothes
LARGE_SCALE_WEIGHT = 0.5      # how much of the level's own variation (large-scale light) is kept
LARGE_SCALE_RANGE = (np.log(0.75), np.log(1.15))
SHADE_STRENGTH = 0.75         # how much of the fold detail reaches the garment
SHADE_RANGE = (0.72, 1.22)    # clip of the final shading factor
LUM_OFFSET = 24.0             # grey levels added before the log: on near-black cloth the sensor's
                              # noise and black level are not light, so dark folds count for less
FOLD_SMOOTH = 0.8             # cells: Gaussian sigma of the fold detail
LOG_QUANT = 48.0              # levels per unit of log luminance for the uint8 median (2 % steps)


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def _cell_px(scale: float) -> int:
    return max(int(round(SHADE_CELL * scale)), MIN_CELL_PX)


def shading_field(crop: np.ndarray, cloth: np.ndarray, scale: float) -> np.ndarray | None:
    """The old clothes' shading in the box: what multiplies the new garment's colour.

    Args:
        crop: (h, w, 3) uint8 RGB photo pixels of the box.
        cloth: (h, w) uint8 {0, 1}, the old upper clothes (CIHP 5, 6, 7) in the box.
        scale: body scale in pixels (`BodyFrame.scale`).
    Returns:
        (h, w) float32 in SHADE_RANGE, 1 = the clothes' local level; None when the box holds
        too little old clothing to measure (the caller then uses no shading).
    """
    h, w = cloth.shape
    c = _cell_px(scale)
    gw, gh = max(-(-w // c), 1), max(-(-h // c), 1)
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    m = cloth.astype(np.float32)
    lum = gray.astype(np.float32) * m
    size = (gw, gh)
    frac = cv2.resize(m, size, interpolation=cv2.INTER_AREA)
    mean = cv2.resize(lum, size, interpolation=cv2.INTER_AREA) / np.maximum(frac, 1e-6)
    valid = frac >= MIN_CLOTH_IN_CELL
    if int(valid.sum()) < 4:
        return None
    logv = np.log(mean + LUM_OFFSET)
    overall = float(np.median(logv[valid]))
    level = _local_level(np.where(valid, logv, overall), overall, scale / c)
    dev = logv - level
    outlier = (np.abs(dev) >= ALBEDO_JUMP).astype(np.uint8)
    # the cells around another material are partly it (a badge's rim): excluded with it
    inlier = valid & (cv2.dilate(outlier, _CROSS) == 0)
    # smooth the fold detail over inlier cells only (normalised convolution), so an outlier cell
    # or the background never bleeds into its neighbours
    wts = inlier.astype(np.float32)
    num = cv2.GaussianBlur(np.where(inlier, dev, 0.0).astype(np.float32), (0, 0), FOLD_SMOOTH)
    den = cv2.GaussianBlur(wts, (0, 0), FOLD_SMOOTH)
    fine = np.where(den > 0.05, num / np.maximum(den, 1e-6), 0.0) * np.float32(SHADE_STRENGTH)
    large = np.clip((level - overall) * LARGE_SCALE_WEIGHT, *LARGE_SCALE_RANGE)
    grid = np.clip(np.exp(fine + large), *SHADE_RANGE).astype(np.float32)
    return cv2.resize(grid, (gw * c, gh * c), interpolation=cv2.INTER_LINEAR)[:h, :w]


def _local_level(logv: np.ndarray, overall: float, cells_per_scale: float) -> np.ndarray:
    """(gh, gw) float32: median of `logv` over a LEVEL_WINDOW x scale window, then lightly blurred."""
    k = int(round(LEVEL_WINDOW * cells_per_scale)) | 1
    k = max(k, 3)
    q = np.clip(np.round((logv - overall) * LOG_QUANT) + 128.0, 0, 255).astype(np.uint8)
    med = cv2.medianBlur(q, k) if k <= 255 else q
    level = (med.astype(np.float32) - 128.0) / LOG_QUANT + overall
    return cv2.GaussianBlur(level, (0, 0), max(k / 4.0, 1.0))
