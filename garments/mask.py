"""Cloth mask from a garment photo on a plain (possibly off-white, shaded) background.

Method:
 1. Model the backdrop from a band along the image border: a quadratic surface per Lab channel, so light
    falloff and a tinted (off-white) backdrop are part of "background".
 2. Score every pixel by its colour distance to that model in units of the backdrop's own noise. Darkening
    with the backdrop's chroma (a soft shadow) counts much less than a change of chroma or a lightening:
    this keeps shadows out while light garments on light backdrops (which differ in chroma/lightness by a
    few units only) stay in.
 3. Seed GrabCut (colour models + edge-aware smoothness) with sure/probable labels from the score, at a
    reduced working size for speed.
 4. Upsample, snap the boundary to the full-resolution edge by a local two-colour test in a thin band,
    keep the largest component and fill holes.
"""

from __future__ import annotations

import cv2
import numpy as np

from garments.errors import InvalidGarmentImage, NoGarmentFound

WORK_SIDE = 384              # px, longest side GrabCut works at
BORDER_FRAC = 0.025          # band along the border that models the backdrop
GRABCUT_ITERS = 2
GRABCUT_SEED = 12345
SHADOW_DARKEN_WEIGHT = 0.06  # weight of a darkening (shadow-like) lightness change vs a chroma change
SHADOW_FREE_DARKEN = 0.30    # fraction of the backdrop's L a shadow may remove before it counts in full
NOISE_FLOOR = 0.35           # Lab units: the least noise assumed for the backdrop
SURE_BG, PROB_FG, SURE_FG = 3.0, 6.0, 14.0   # score thresholds (in backdrop noise units)
REFINE_BAND_PX = 4           # full-res band around the upsampled boundary that is re-classified
MIN_SIDE = 32
FEATURE_SCALE = 25.0         # noise units mapped to ~0.76 of the feature range by tanh
TEXTURE_SIGMA_PX = 1.2      # full-res scale of the fabric texture used when colour alone fails
MIN_GARMENT_FRAC = 0.03      # a garment smaller than this fraction of the photo is refused
BRIDGE_PX = 41               # full-res px: vertical gaps this tall inside the garment (light stripes) are bridged


def check_rgb(image: np.ndarray, what: str = "image") -> None:
    """Raise InvalidGarmentImage unless image is (H, W, 3) uint8 with both sides >= MIN_SIDE."""
    if not isinstance(image, np.ndarray):
        raise InvalidGarmentImage(f"{what} must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InvalidGarmentImage(f"{what} must be (H, W, 3) uint8 RGB, got shape {image.shape} dtype {image.dtype}")
    if min(image.shape[:2]) < MIN_SIDE:
        raise InvalidGarmentImage(f"{what} is {image.shape[1]}x{image.shape[0]}; both sides must be >= {MIN_SIDE} px")


def keep_largest_component(mask: np.ndarray) -> np.ndarray:
    """(H, W) uint8 0/255 -> the largest 8-connected foreground component only (0/255)."""
    fg = (mask >= 128).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if n <= 1:
        return np.zeros_like(fg)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return np.where(labels == best, 255, 0).astype(np.uint8)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """(H, W) uint8 0/255 -> the same with every background region not connected to the border filled."""
    fg = (mask >= 128).astype(np.uint8) * 255
    h, w = fg.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = fg
    flood = padded.copy()
    cv2.floodFill(flood, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 255)
    holes = cv2.bitwise_not(flood)[1:-1, 1:-1]
    return cv2.bitwise_or(fg, holes)


def _border_band(h: int, w: int) -> np.ndarray:
    b = max(2, round(BORDER_FRAC * min(h, w)))
    band = np.zeros((h, w), bool)
    band[:b], band[-b:], band[:, :b], band[:, -b:] = True, True, True, True
    return band


def _backdrop_model(lab: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Quadratic fit of each Lab channel over the border band (outliers such as a garment touching the
    border refitted away): (H, W, 3) float32 model of the bare backdrop."""
    h, w = band.shape
    by, bx = np.nonzero(band)
    by, bx = by[::3], bx[::3]          # a third of the band is plenty for 6 coefficients

    def basis(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        xn, yn = x / w - 0.5, y / h - 0.5
        return np.stack([np.ones_like(xn), xn, yn, xn * xn, yn * yn, xn * yn], axis=-1)

    a = basis(bx.astype(np.float32), by.astype(np.float32))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    full = basis(xx, yy)
    model = np.empty_like(lab)
    for c in range(3):
        v = lab[by, bx, c]
        coef, *_ = np.linalg.lstsq(a, v, rcond=None)
        resid = v - a @ coef
        mad = 1.4826 * np.median(np.abs(resid - np.median(resid)))
        keep = np.abs(resid - np.median(resid)) < 3 * mad + 1
        coef, *_ = np.linalg.lstsq(a[keep], v[keep], rcond=None)
        model[..., c] = full @ coef.astype(np.float32)
    return model


def _noise_sigma(lab: np.ndarray, model: np.ndarray, band: np.ndarray) -> np.ndarray:
    """Robust per-channel noise of the backdrop around its model: (3,) float32, at least NOISE_FLOOR."""
    r = (lab - model)[band]
    med = np.median(r, axis=0)
    mad = 1.4826 * np.median(np.abs(r - med), axis=0)
    return np.maximum(mad, NOISE_FLOOR).astype(np.float32)


def _to_lab(image: np.ndarray) -> np.ndarray:
    # float Lab (L 0..100): 8-bit Lab quantises a/b to whole units, too coarse for white-on-off-white
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)


def backdrop_difference(image: np.ndarray, model: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W, 3) float32 shadow-suppressed difference to the backdrop model.

    Channels: lightness change (darkening mostly forgiven up to SHADOW_FREE_DARKEN), a and b change, each in
    units of the backdrop's own noise. `model` (any size, resized) reuses a backdrop model fitted before.
    """
    lab = _to_lab(image)
    band = _border_band(*image.shape[:2])
    if model is None:
        model = _backdrop_model(lab, band)
    elif model.shape != lab.shape:
        model = cv2.resize(model, (lab.shape[1], lab.shape[0]), interpolation=cv2.INTER_LINEAR)
    sigma = _noise_sigma(lab, model, band)
    d = lab - model
    dl = d[..., 0]
    free = SHADOW_FREE_DARKEN * model[..., 0]
    dark = np.maximum(-dl - free, 0.0) + SHADOW_DARKEN_WEIGHT * np.minimum(-dl, free).clip(min=0)
    dl_eff = np.where(dl > 0, dl, -dark)
    return np.stack([dl_eff / sigma[0], d[..., 1] / sigma[1], d[..., 2] / sigma[2]], axis=-1).astype(np.float32)


def foreground_score(diff: np.ndarray) -> np.ndarray:
    """(H, W, 3) backdrop_difference -> (H, W) float32 >= 0: distance to the backdrop in noise units."""
    return np.sqrt(np.sum(diff * diff, axis=-1))


def texture_score(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Local fine-texture energy of the lightness, in units of the backdrop's own (from the border band),
    at size (W, H): (H, W) float32 >= 0. Woven/knit fabric has texture that smooth paper does not."""
    light = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2LAB)[..., 0]
    high = light - cv2.GaussianBlur(light, (0, 0), TEXTURE_SIGMA_PX)
    energy = np.sqrt(cv2.GaussianBlur(high * high, (0, 0), 3 * TEXTURE_SIGMA_PX))
    energy = cv2.resize(energy, size, interpolation=cv2.INTER_AREA)
    band = _border_band(size[1], size[0])
    med = float(np.median(energy[band]))
    spread = 1.4826 * float(np.median(np.abs(energy[band] - med))) + 0.05 * med + 1e-3
    return np.clip((energy - med) / spread, 0, None).astype(np.float32)


def feature_image(diff: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR-like image GrabCut models: the difference compressed with tanh around 128, so faint
    differences (light garment, off-white backdrop) are amplified and shadows look like the backdrop."""
    return np.clip(128.0 + 127.0 * np.tanh(diff / FEATURE_SCALE), 0, 255).astype(np.uint8)


def _bridge(mask: np.ndarray, scale: float) -> np.ndarray:
    """Vertical closing + hole filling: joins garment parts split by backdrop-coloured horizontal bands
    (white stripes on a white backdrop). Vertical only, so the slot between a hanging sleeve and the body
    and the armpit notch stay open."""
    k = max(3, int(BRIDGE_PX * scale) | 1)
    closed = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (1, k)))
    return fill_holes(closed)


def _grabcut(small: np.ndarray, score: np.ndarray, scale: float) -> np.ndarray:
    gc = np.full(score.shape, cv2.GC_PR_BGD, np.uint8)
    likely = _bridge(np.where(score > PROB_FG, 255, 0).astype(np.uint8), scale)
    gc[likely > 0] = cv2.GC_PR_FGD
    sure = cv2.erode((score > SURE_FG).astype(np.uint8), np.ones((5, 5), np.uint8))
    gc[sure > 0] = cv2.GC_FGD
    gc[(score < SURE_BG) & (likely == 0)] = cv2.GC_BGD
    gc[_border_band(*score.shape)] = cv2.GC_BGD
    if not (gc == cv2.GC_FGD).any() and not (gc == cv2.GC_PR_FGD).any():
        raise NoGarmentFound("no pixel differs from the backdrop: photograph the garment on a plain contrasting "
                             "background (or supply a PNG with transparency)")
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(GRABCUT_SEED)   # GrabCut seeds its colour models with k-means on OpenCV's RNG: repeatable masks
    try:
        cv2.grabCut(small, gc, None, bgd, fgd, GRABCUT_ITERS, cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]
    except cv2.error:   # degenerate colour model (e.g. no probable background): fall back to the score
        return np.where(score > PROB_FG, 255, 0).astype(np.uint8)
    return np.where((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD), 255, 0).astype(np.uint8)


def _refine_edges(diff: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """Snap the upsampled boundary to the full-res edge. In a thin band around it a pixel is garment when its
    backdrop score exceeds half the local garment score (the 50 % coverage point of an anti-aliased edge),
    and at least PROB_FG (so a contact shadow stays backdrop while a light garment's darker rim stays cloth)."""
    m = (soft >= 0.5).astype(np.uint8)
    k = np.ones((2 * REFINE_BAND_PX + 1,) * 2, np.uint8)
    band = (cv2.dilate(m, k) - cv2.erode(m, k)) > 0
    score = foreground_score(cv2.GaussianBlur(diff, (0, 0), 0.7))
    inner = cv2.erode(m, k, iterations=2).astype(np.float32)
    num = cv2.GaussianBlur(np.minimum(score, 1e4) * inner, (0, 0), 6.0)
    den = cv2.GaussianBlur(inner, (0, 0), 6.0)
    local_fg = np.where(den > 1e-3, num / np.maximum(den, 1e-3), 2 * PROB_FG)
    threshold = np.maximum(PROB_FG, 0.5 * local_fg)
    out = m > 0
    out[band] = (score > threshold)[band]
    return np.where(out, 255, 0).astype(np.uint8)


def cloth_mask(image: np.ndarray) -> np.ndarray:
    """Garment mask of a product photo.

    Args:
        image: (H, W, 3) uint8 RGB, the garment on a plain backdrop that reaches the image border.
    Returns:
        (H, W) uint8, 255 = cloth, 0 = background; one connected region with its holes filled.
    Raises:
        InvalidGarmentImage: wrong shape/dtype or too small. NoGarmentFound: nothing differs from the backdrop.
    """
    check_rgb(image)
    h, w = image.shape[:2]
    scale = min(1.0, WORK_SIDE / max(h, w))
    small = image
    if scale < 1:
        small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(small, (3, 3), 0)
    model = _backdrop_model(_to_lab(blurred), _border_band(*blurred.shape[:2]))
    diff = backdrop_difference(blurred, model)
    score = foreground_score(diff)
    coarse = keep_largest_component(_bridge(_grabcut(feature_image(diff), score, scale), scale))
    if (coarse > 0).mean() < MIN_GARMENT_FRAC:
        # Colour alone lost the garment (a white tee on white paper reads as a shadow): add fabric texture,
        # which smooth paper lacks. Only as a fallback: texture also rings around every edge, which costs
        # a pixel or two of boundary on garments that colour already separates.
        score = np.hypot(score, texture_score(image, score.shape[::-1]))
        coarse = keep_largest_component(_bridge(_grabcut(feature_image(diff), score, scale), scale))
    if not coarse.any():
        raise NoGarmentFound("no garment region found in the photo")
    soft = cv2.resize(coarse.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_LINEAR)
    if scale < 1:
        soft = cv2.GaussianBlur(soft, (0, 0), 0.5 / scale)
    fine = _refine_edges(backdrop_difference(image, model), soft)
    fine = cv2.morphologyEx(fine, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    out = keep_largest_component(_bridge(fine, 1.0))
    frac = float((out > 0).mean())
    if frac < MIN_GARMENT_FRAC:
        # A real garment photo fills a good part of the frame; a speck means the garment was not told apart
        # from its backdrop (e.g. a white tee on white paper reads as a shadow): refuse rather than guess.
        raise NoGarmentFound(
            f"the garment region found covers only {100 * frac:.1f}% of the photo (expected >= "
            f"{100 * MIN_GARMENT_FRAC:.0f}%): the garment is too close to its backdrop in colour; photograph it "
            "on a contrasting plain background, or supply a PNG/WebP whose alpha channel is the cloth mask")
    return out
