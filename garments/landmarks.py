"""Garment landmarks and shape family from a cloth mask (front view of a top, upright).

Convention: (x, y) pixels, origin top-left. Sides are the wearer's: the wearer's RIGHT is on the image's LEFT.
Rows of the result follow garments.types.LANDMARK_NAMES.

Method (all on the silhouette, vectorised per row/column):
 - the centre line x_c and, per row, the "torso run" (the run of cloth containing x_c);
 - a straight line fitted to each body side between the armpits and the hem;
 - armpit = where the torso run's edge leaves that line going up (a sleeve joins, or a tank's armhole bends in);
 - hem corners = the torso edge points furthest down-and-out (max of y + |x - x_c|) below the armpits;
 - shoulder tip = the top of the silhouette a little outside the armpit (sleeved), or the outer corner of the
   strap (sleeveless: max of -y + |x - x_c| / 2 above the armpit);
 - collar = the top of the silhouette on the centre line (back neckline), or, when a hood rises far above the
   shoulders, the level where the hood meets the shoulder slopes;
 - cuff = middle of the sleeve's opening: halfway between the sleeve pixel (outside the body line) furthest
   from the shoulder tip and the one furthest from the armpit; = shoulder tip when sleeveless.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from garments.errors import LandmarkError
from garments.types import LANDMARK_NAMES

MIN_AREA_PX = 2000
SHOULDER_OUT = 1.08          # shoulder tip x = centre + 1.08 x (armpit x - centre)
HOOD_RISE = 0.25             # collar top this far (x body width) above the shoulders means a hood
HOOD_STEEP = 1.2             # |dy/dx| of the top profile that marks the hood's side
SLEEVE_MIN_FRAC = 0.01       # sleeve pixels below this fraction of the garment: sleeveless
SLOT_SPAN = 0.15             # rows below the armpit (x garment height) used to extend a hanging sleeve's slot
CUFF_FAR = 0.7               # sleeve-end corners are sought beyond this fraction of the sleeve's reach
LONG_SLEEVE = 0.55           # sleeve length / (hem - shoulder) above this: long sleeve


@dataclass(frozen=True)
class LandmarkResult:
    points: np.ndarray       # (9, 2) float32 (x, y), LANDMARK_NAMES order
    kind: str                # "tank", "tshirt", "longsleeve" or "hoodie" ("shirt" cannot be told from a silhouette)


def _torso_runs(m: np.ndarray, xc: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = m.shape
    cols = np.arange(w)
    has = m[:, xc]
    left_gap = np.where(~m[:, :xc], cols[:xc], -1).max(axis=1) + 1
    right_gap = np.where(~m[:, xc:], cols[xc:], w).min(axis=1) - 1
    return has, left_gap.astype(np.float64), right_gap.astype(np.float64)


def _fit_side(ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    coef = np.polyfit(ys, xs, 1)
    keep = np.abs(np.polyval(coef, ys) - xs) < 3.0
    if keep.sum() >= 5:
        coef = np.polyfit(ys[keep], xs[keep], 1)
    return coef


def _armpit_row(edge: np.ndarray, has: np.ndarray, coef: np.ndarray, start: int, *, top: int, tol: float) -> int:
    y = start
    while y > top and has[y - 1] and abs(edge[y - 1] - np.polyval(coef, y - 1)) <= tol:
        y -= 1
    return y


def _slot_apex(m: np.ndarray, edge: np.ndarray, ya: int, span: int, sign: int) -> tuple[float, float]:
    """A sleeve hanging beside the body leaves a slot that narrows toward the armpit and closes before it
    (shadow, anti-aliasing), so the first row with a gap lies below the armpit: extend the sleeve's inner edge
    up to the body side instead. Returns the armpit (x, y); (edge[ya], ya) when there is no hanging sleeve."""
    keep = (float(edge[ya]), float(ya))
    h, w = m.shape
    rows = np.arange(ya, min(ya + span, h))
    block = m[rows]
    cols = np.arange(w)[None, :]
    if sign < 0:   # image left: the sleeve's inner edge is the right-most cloth left of the torso run
        cond = block & (cols < (edge[rows] - 1)[:, None])
        inner = np.where(cond, cols, -1).max(axis=1).astype(np.float64)
        ok = (inner >= 0) & (edge[rows] - inner >= 2)
    else:
        cond = block & (cols > (edge[rows] + 1)[:, None])
        inner = np.where(cond, cols, w).min(axis=1).astype(np.float64)
        ok = (inner < w) & (inner - edge[rows] >= 2)
    if ok.sum() < 8:
        return keep
    a = np.polyfit(rows[ok].astype(np.float64), inner[ok], 1)
    side = np.polyfit(rows[ok].astype(np.float64), edge[rows][ok], 1)   # the body side right beside the slot
    denom = a[0] - side[0]
    if abs(denom) < 1e-3:
        return keep
    y_star = float((side[1] - a[1]) / denom)
    return (float(np.polyval(side, y_star)), y_star) if ya - span <= y_star <= ya else keep


def silhouette(mask: np.ndarray) -> tuple[np.ndarray, int, int, int]:
    """(bool mask, top row, bottom row, centre column) of a (H, W) uint8 cloth mask (>= 128 = cloth).
    Raises LandmarkError for a non-2D mask or a silhouette under MIN_AREA_PX."""
    if mask.ndim != 2:
        raise LandmarkError(f"mask must be (H, W), got shape {mask.shape}")
    m = mask >= 128
    ys, xs = np.nonzero(m)
    if ys.size < MIN_AREA_PX:
        raise LandmarkError(f"garment silhouette has {ys.size} px; need at least {MIN_AREA_PX}")
    return m, int(ys.min()), int(ys.max()), int(round(float(xs.mean())))


def find_landmarks(mask: np.ndarray) -> LandmarkResult:
    """Landmarks and shape family of an upright front-view top.

    Args:
        mask: (H, W) uint8, >= 128 = cloth (one garment; see cloth_mask).
    Raises:
        LandmarkError: the silhouette is too small or has no body to measure.
    """
    m, y0, y1, xc = silhouette(mask)
    height = y1 - y0 + 1
    has, tl, tr = _torso_runs(m, xc)
    low = np.arange(int(y0 + 0.7 * height), int(y1 - 0.03 * height))
    low = low[has[low]]
    if low.size:
        xc = int(round(float(np.median((tl[low] + tr[low]) / 2))))
        has, tl, tr = _torso_runs(m, xc)
    rows = np.flatnonzero(has)
    if rows.size < 0.3 * height:
        raise LandmarkError("no torso found on the garment's centre line (is the garment upright and centred?)")
    y_hem = int(rows.max())
    body = np.arange(int(y0 + 0.55 * height), int(y_hem - 0.08 * height))
    body = body[has[body]]
    if body.size < 10:
        raise LandmarkError("the garment body is too short to measure")
    width = float(np.median(tr[body] - tl[body]))
    tol = max(3.0, 0.02 * width)
    cl, cr = _fit_side(body.astype(np.float64), tl[body]), _fit_side(body.astype(np.float64), tr[body])
    ya_l = _armpit_row(tl, has, cl, int(body[0]), top=y0, tol=tol)
    ya_r = _armpit_row(tr, has, cr, int(body[0]), top=y0, tol=tol)
    armpit_l = np.array([tl[ya_l], ya_l], np.float64)   # image left = wearer's right
    armpit_r = np.array([tr[ya_r], ya_r], np.float64)
    span = int(SLOT_SPAN * height)
    armpit_l[:] = _slot_apex(m, tl, ya_l, span, -1)
    armpit_r[:] = _slot_apex(m, tr, ya_r, span, 1)

    def hem_corner(edge: np.ndarray, ya: int, sign: float) -> np.ndarray:
        yy = np.arange(ya, y_hem + 1)
        yy = yy[has[yy]]
        score = yy + sign * (edge[yy] - xc)
        k = int(np.argmax(score))
        return np.array([edge[yy[k]], yy[k]], np.float64)

    hem_l, hem_r = hem_corner(tl, ya_l, -1.0), hem_corner(tr, ya_r, 1.0)

    h, w = m.shape
    col_has: np.ndarray = np.asarray(m.any(axis=0))
    top = np.where(col_has, np.argmax(m, axis=0), h).astype(np.float64)
    yy_all = np.arange(h, dtype=np.float64)[:, None]
    xx_all = np.arange(w, dtype=np.float64)[None, :]
    outside_l = m & (xx_all < np.polyval(cl, yy_all) - tol) & (yy_all < y_hem)
    outside_r = m & (xx_all > np.polyval(cr, yy_all) + tol) & (yy_all < y_hem)
    sleeveless = min(outside_l.sum(), outside_r.sum()) < SLEEVE_MIN_FRAC * np.count_nonzero(m)

    def shoulder(armpit: np.ndarray, sign: float) -> np.ndarray:
        if sleeveless:
            span = np.arange(xc, int(armpit[0]) - 1 if sign < 0 else int(armpit[0]) + 1, int(sign))
            span = span[(top[span] < armpit[1])]
            if not span.size:
                return armpit.copy()
            k = int(np.argmax(-top[span] + 0.5 * np.abs(span - xc)))
            return np.array([span[k], top[span[k]]], np.float64)
        x = int(round(xc + (armpit[0] - xc) * SHOULDER_OUT))
        x = min(max(x, 0), w - 1)
        while not col_has[x] and x != xc:   # very narrow shoulders: step back toward the centre
            x += 1 if x < xc else -1
        return np.array([x, top[x]], np.float64)

    sh_l, sh_r = shoulder(armpit_l, -1.0), shoulder(armpit_r, 1.0)

    centre_top = float(np.median(top[max(xc - 2, 0) : xc + 3]))
    shoulder_y = (sh_l[1] + sh_r[1]) / 2
    hood = (not sleeveless) and shoulder_y - centre_top > HOOD_RISE * width
    collar_y = centre_top
    if hood:
        levels = []
        for tip, sign in ((sh_l, -1.0), (sh_r, 1.0)):
            inward = np.arange(int(tip[0]), xc, -int(sign))   # from the shoulder tip toward the centre
            prof = top[inward]
            rise = (prof[:-6] - prof[6:]) / 6.0           # how fast the top climbs moving inward
            steep = np.flatnonzero(rise > HOOD_STEEP)
            levels.append(prof[steep[0]] if steep.size else centre_top)
        collar_y = float(np.mean(levels))
    collar = np.array([xc, collar_y], np.float64)

    def cuff(sleeve: np.ndarray, tip: np.ndarray, armpit: np.ndarray) -> np.ndarray:
        if sleeveless:
            return tip.copy()
        sy, sx = np.nonzero(sleeve)
        pts = np.stack([sx, sy], axis=1).astype(np.float64)
        # The sleeve end's two corners, among the pixels far from the sleeve root: the one furthest from the
        # shoulder tip (under side) and the one furthest from the armpit (top side); the cuff is between them.
        root = (tip + armpit) / 2
        d_root = np.sum((pts - root) ** 2, axis=1)
        pts = pts[d_root >= CUFF_FAR**2 * d_root.max()]
        far_from_tip = pts[int(np.argmax(np.sum((pts - tip) ** 2, axis=1)))]
        far_from_armpit = pts[int(np.argmax(np.sum((pts - armpit) ** 2, axis=1)))]
        return (far_from_tip + far_from_armpit) / 2

    cuff_l, cuff_r = cuff(outside_l, sh_l, armpit_l), cuff(outside_r, sh_r, armpit_r)

    if sleeveless:
        kind = "tank"
    elif hood:
        kind = "hoodie"
    else:
        sleeve_len = (np.hypot(*(cuff_l - sh_l)) + np.hypot(*(cuff_r - sh_r))) / 2
        kind = "longsleeve" if sleeve_len > LONG_SLEEVE * (y_hem - shoulder_y) else "tshirt"

    by_name = {
        "collar": collar, "shoulder_right": sh_l, "shoulder_left": sh_r, "armpit_right": armpit_l,
        "armpit_left": armpit_r, "hem_right": hem_l, "hem_left": hem_r, "cuff_right": cuff_l, "cuff_left": cuff_r,
    }
    points = np.stack([by_name[n] for n in LANDMARK_NAMES]).astype(np.float32)
    return LandmarkResult(points=points, kind=kind)
