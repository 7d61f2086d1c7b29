"""Fidelity measures of a try-on, shared by tests/viton/test_fidelity.py and bench/viton_bench.py.

    protected_regions(person) -> {name: (H, W) bool}   face box, hair, below the hem, lower body
    protected_diffs(person, out) -> {name: (max, mean)} absolute grey-level differences per region
    explained_ratio(person, result) -> float           share of the changed pixels the garment explains
    garment_colour_ratio(garment, result) -> float     share of the warped garment in the garment's colours
    highpass_correlation(person, result) -> float      old clothes' fine pattern vs the result's

A changed pixel is *explained* when out = photo * (1 - alpha) + s * alpha * warped for one shading
factor s in SHADING_BOUNDS (the old clothes' light), within RESIDUAL_TOL grey levels per channel:
it is then the photo, the garment in the photo's light, or their anti-aliased mix. A painted
skin colour or a diffusion of the garment's colours where the garment is not (alpha = 0) is not.
"""

from __future__ import annotations

import cv2
import numpy as np

from viton import GarmentData, PersonData, TryOnOutput
from viton.geometric.body import body_frame
from viton.geometric.protect import hem_line

CHANGED_MIN = 3             # grey levels: a pixel changed when some channel moved by more
RESIDUAL_TOL = 6.0          # grey levels: largest channel residual of an explained pixel
SHADING_BOUNDS = (0.5, 1.5)  # shading factors an explanation may use
LOWER_BODY = (8, 9, 12, 16, 17, 18, 19)  # socks, pants, skirt, legs, shoes
HIGHPASS_SIGMA = 0.02       # x body scale: Gaussian sigma under which detail counts as "pattern"
COLOUR_BIN = 16             # grey levels per bin of the garment's colour set


def protected_regions(person: PersonData) -> dict[str, np.ndarray]:
    """(H, W) bool masks of what a try-on must never change, from the parse map and the pose."""
    parse = person.parse
    h, w = parse.shape
    out: dict[str, np.ndarray] = {"hair": parse == 2, "lower_body": np.isin(parse, LOWER_BODY)}
    face = np.zeros((h, w), bool)
    ys, xs = np.nonzero(parse == 13)
    if ys.size:
        face[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
    out["face_box"] = face
    a, b, c = hem_line(body_frame(person.keypoints))
    yy, xx = np.mgrid[0:h, 0:w]
    out["below_hem"] = (a * xx + b * yy + c) > 1.0  # the anti-aliased hem line itself is allowed
    return out


def protected_diffs(person: PersonData, out: np.ndarray) -> dict[str, tuple[int, float]]:
    """{region: (largest, mean) |out - photo| over its pixels and channels}; (0, 0.0) for an empty region."""
    diff = np.abs(out.astype(np.int16) - person.image.astype(np.int16)).max(axis=-1)
    res = {}
    for name, mask in protected_regions(person).items():
        res[name] = (int(diff[mask].max()), float(diff[mask].mean())) if mask.any() else (0, 0.0)
    return res


def explained_ratio(person: PersonData, result: TryOnOutput) -> float:
    """Share of the changed pixels that the warped garment under some shading explains (1.0 if none changed)."""
    photo = person.image.astype(np.float32)
    out = result.image.astype(np.float32)
    changed = np.abs(out - photo).max(axis=-1) > CHANGED_MIN
    n = int(changed.sum())
    if n == 0:
        return 1.0
    a = result.garment_alpha[changed][:, None]
    base = photo[changed] * (1.0 - a)
    o = out[changed]
    m = a * result.warped_garment[changed].astype(np.float32)
    # the shading factor by least squares over the channels that did not saturate (a white garment
    # in a highlight clips at 255); the prediction is clipped as the engine's uint8 output is
    w = (o < 254.5).astype(np.float32)
    num, den = (w * (o - base) * m).sum(1), (w * m * m).sum(1)
    s = np.clip(np.where(den > 1e-6, num / np.maximum(den, 1e-6), SHADING_BOUNDS[1]), *SHADING_BOUNDS)
    residual = np.abs(o - np.clip(base + s[:, None] * m, 0.0, 255.0)).max(axis=1)
    return float((residual <= RESIDUAL_TOL).sum() / n)


def garment_colour_ratio(garment: GarmentData, result: TryOnOutput) -> float:
    """Share of the warped garment's solid pixels (alpha > 0.5) whose colour lies in the garment's own
    colour set (bins of COLOUR_BIN levels, grown by one bin for bilinear sampling): the engine's
    `warped_garment` is the garment, not something else."""
    bins = 256 // COLOUR_BIN
    present = np.zeros((bins, bins, bins), np.uint8)
    q = garment.image[garment.mask >= 128] // COLOUR_BIN
    present[q[:, 0], q[:, 1], q[:, 2]] = 1
    present = cv2.dilate(present.reshape(bins, -1), np.ones((3, 3), np.uint8)).reshape(bins, bins, bins)
    present = np.maximum(present, np.roll(present, 1, 0) | np.roll(present, -1, 0))
    solid = result.garment_alpha > 0.5
    if not solid.any():
        return 1.0
    w = result.warped_garment[solid] // COLOUR_BIN
    return float(present[w[:, 0], w[:, 1], w[:, 2]].mean())


def highpass_correlation(person: PersonData, result: TryOnOutput) -> float:
    """Pearson correlation of the high-pass luminance of the photo and of the result, over the old
    upper clothes (CIHP 5, 6, 7, eroded by 3 px) where the garment is solid (alpha > 0.98).
    0.0 when fewer than 500 such pixels."""
    cloth = np.isin(person.parse, (5, 6, 7)).astype(np.uint8)
    cloth = cv2.erode(cloth, np.ones((7, 7), np.uint8)).astype(bool)
    mask = cloth & (result.garment_alpha > 0.98)
    if int(mask.sum()) < 500:
        return 0.0
    sigma = max(HIGHPASS_SIGMA * body_frame(person.keypoints).scale, 1.0)

    def highpass(img: np.ndarray) -> np.ndarray:
        lum = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return lum - cv2.GaussianBlur(lum, (0, 0), sigma)

    a, b = highpass(person.image)[mask], highpass(result.image)[mask]
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


PATTERN_JUMP = np.log(1.4)   # photo luminance this far from its local median: a print, badge or collar
PATTERN_WINDOW = 0.25        # x body scale: window of that local median
PATTERN_OFFSET = 24.0        # grey levels added before the log (dark cloth's noise is not a pattern)
MIN_PATTERN_CONTRAST = np.log(1.2)  # print / ring contrast in the photo below which nothing is measured


def pattern_transfer(person: PersonData, result: TryOnOutput) -> float | None:
    """How much of the old clothes' print contrast reaches the garment's shading (0 = none, 1 = all).

    Print pixels: old clothes (eroded) under the solid garment whose luminance is above (light
    prints) or below (dark prints) the local median by more than PATTERN_JUMP (badges, collars,
    stripes, and deep folds); their ring: the cloth around them. The garment's shading is the
    result's luminance over the warped garment's (so the garment's own print does not count). The
    measure is the log contrast print / ring of that shading over the same contrast in the photo,
    the larger of the light and the dark set. None when neither has enough pixels or contrast.
    """
    scale = body_frame(person.keypoints).scale
    lum_w = cv2.cvtColor(result.warped_garment, cv2.COLOR_RGB2GRAY).astype(np.float32)
    cloth = np.isin(person.parse, (5, 6, 7)).astype(np.uint8)
    cloth = cv2.erode(cloth, np.ones((7, 7), np.uint8)).astype(bool) & (result.garment_alpha > 0.98) & (lum_w > 24)
    grey = cv2.cvtColor(person.image, cv2.COLOR_RGB2GRAY)
    k = max(int(PATTERN_WINDOW * scale) | 1, 3)
    med = cv2.medianBlur(grey, min(k, 255)).astype(np.float32)
    dev = np.log((grey.astype(np.float32) + PATTERN_OFFSET) / (med + PATTERN_OFFSET))
    lum_p = grey.astype(np.float32) + PATTERN_OFFSET
    shade = cv2.cvtColor(result.image, cv2.COLOR_RGB2GRAY).astype(np.float32) / np.maximum(lum_w, 1.0)
    r = max(int(0.05 * scale), 2)
    worst: float | None = None
    for prints in (cloth & (dev > PATTERN_JUMP), cloth & (dev < -PATTERN_JUMP)):  # light prints, dark ones
        ring = cv2.dilate(prints.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)).astype(bool)
        ring &= cloth & ~prints
        if int(prints.sum()) < 200 or int(ring.sum()) < 200:
            continue
        base = float(np.log(lum_p[prints].mean() / lum_p[ring].mean()))
        if abs(base) < MIN_PATTERN_CONTRAST:
            continue
        got = float(np.log(shade[prints].mean() / shade[ring].mean()))
        worst = max(worst or 0.0, got / base)
    return worst


def edge_softness(result: TryOnOutput) -> float:
    """Share of the garment's edge pixels (alpha > 0.5 beside alpha <= 0.5, 4-neighbours) that have
    a partly transparent pixel (0.02 < alpha < 0.98) within one pixel: 1.0 = an anti-aliased edge
    all round, 0.0 = a hard cut (a seam). 1.0 when there is no edge."""
    a = result.garment_alpha
    solid = (a > 0.5).astype(np.uint8)
    edge = solid & (cv2.erode(solid, np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)) == 0)
    n = int(edge.sum())
    if n == 0:
        return 1.0
    partial = ((a > 0.02) & (a < 0.98)).astype(np.uint8)
    near = cv2.dilate(partial, np.ones((3, 3), np.uint8)).astype(bool)
    return float((edge.astype(bool) & near).sum() / n)
