"""Landmarks of a bottom (trousers, shorts, skirt) or a dress from its cloth mask (front view, upright).

Convention: (x, y) pixels, origin top-left; sides are the wearer's (the wearer's RIGHT is on the image's
LEFT). Rows follow garments.types.BOTTOM_LANDMARK_NAMES / DRESS_LANDMARK_NAMES.

Bottom, on the silhouette:
 - waistband: the row WAIST_ROW x height below the top must be one run of cloth across the centre line,
   as wide as the garment's top part (a top's sleeves, a tank's straps or a neckline fail this: a top
   uploaded as a bottom is refused with LandmarkError); its corners are the waist corners;
 - crotch: the highest row from which the centre line is background down to the hem, with cloth on both
   sides (two legs); none (or only in the last rows): a skirt, whose crotch and inner hem corners are the
   middle of its hem;
 - corners are the cloth pixels furthest out along a diagonal (max of +-y + CORNER_SLANT x +-x): the waist
   corners among the top WAIST_PART rows, the hem corners among the bottom HEM_PART rows, per leg (outer
   and inner) or of the whole skirt;
 - kind: "skirt" without a crotch, "shorts" when the legs are shorter than SHORTS_LEG x the waist width,
   else "trousers".
Dress: the waist is the narrowest row of the body between DRESS_WAIST_SPAN of its height; the part above
it is measured as a top (garments.landmarks.find_landmarks: collar, shoulders, armpits, cuffs), the hem
corners are the outer edges of the lowest rows.
"""

from __future__ import annotations

import numpy as np

from garments.errors import LandmarkError
from garments.landmarks import LandmarkResult, find_landmarks, silhouette
from garments.types import BOTTOM_LANDMARK_NAMES, DRESS_LANDMARK_NAMES, LANDMARK_NAMES

WAIST_ROW = 0.03           # x height below the top: the row the waistband is measured on
MAX_TOP_FLARE = 1.35       # widest row in the top TOP_PART of the height / waistband width: more is a top
TOP_PART = 0.3
CORNER_SLANT = 0.5         # weight of x against y when looking for a corner
WAIST_PART = 0.1           # x height: the top rows holding the waist corners
HEM_PART = 0.15            # x height: the bottom rows holding the hem corners
MIN_LEG_GAP_ROWS = 0.05    # x height: a centre gap shorter than this above the hem is no crotch
SHORTS_LEG = 0.9           # leg length (crotch -> hem) / waist width below this: shorts
DRESS_WAIST_SPAN = (0.3, 0.6)   # where a dress's waist is sought, x its height from the top
MIN_DRESS_SKIRT = 0.35     # a dress's part below the waist, x its height: less is a top
MIN_DRESS_FLARE = 1.2      # hem width / waist width of a dress (a top's body is straight)
MIN_DRESS_LENGTH = 2.6     # height / waist width of a dress


def _run_at(row: np.ndarray, x: int) -> tuple[int, int] | None:
    """(first, last) column of the run of True in `row` that contains column x, or None."""
    if not row[x]:
        return None
    left = np.flatnonzero(~row[:x])
    right = np.flatnonzero(~row[x:])
    return (int(left[-1]) + 1 if left.size else 0), (x + int(right[0]) - 1 if right.size else row.size - 1)


def _extent(row: np.ndarray) -> tuple[int, int]:
    cols = np.flatnonzero(row)
    return int(cols[0]), int(cols[-1])


def _corner(m: np.ndarray, rows: tuple[int, int], cols: tuple[int, int], sx: float, sy: float) -> np.ndarray:
    """(2,) float64 (x, y): the cloth pixel in rows [r0, r1), cols [c0, c1) maximising sy*y + CORNER_SLANT*sx*x.
    Raises LandmarkError when that part holds no cloth."""
    (r0, r1), (c0, c1) = rows, cols
    ys, xs = np.nonzero(m[r0:r1, c0:c1])
    if ys.size == 0:
        raise LandmarkError(f"no cloth in rows {r0}..{r1}, columns {c0}..{c1} where a corner was expected")
    k = int(np.argmax(sy * ys + CORNER_SLANT * sx * xs))
    return np.array([xs[k] + c0, ys[k] + r0], np.float64)


def _waistband(m: np.ndarray, y0: int, y1: int, xc: int) -> tuple[int, int, int]:
    """(row, left, right) of the waistband. Raises LandmarkError when the top does not look like one."""
    height = y1 - y0 + 1
    yw = y0 + max(2, int(round(WAIST_ROW * height)))
    run = _run_at(m[yw], xc)
    if run is None:
        raise LandmarkError(f"no waistband: the garment's centre line is not cloth {yw - y0} px below its top "
                            "(a neckline?); this does not look like a bottom (trousers, shorts or a skirt) - "
                            "upload it with category 'top'")
    width = run[1] - run[0] + 1
    rows = np.arange(y0, y0 + int(TOP_PART * height))
    widest = max(_extent(m[y])[1] - _extent(m[y])[0] + 1 for y in rows if m[y].any())
    if widest > MAX_TOP_FLARE * width:
        raise LandmarkError(f"the garment is {widest} px wide near its top but its waistband only {width} px "
                            "(sleeves or shoulders?); this does not look like a bottom (trousers, shorts or a "
                            "skirt) - upload it with category 'top'")
    return yw, run[0], run[1]


def _crotch_row(m: np.ndarray, y_start: int, y_hem: int, xc: int) -> int | None:
    """The highest row from which the centre column is background down to the hem, with cloth on both sides."""
    w = m.shape[1]
    centre = m[y_start:y_hem + 1, max(xc - 1, 0):min(xc + 2, w)].any(axis=1)
    both = m[y_start:y_hem + 1, :xc].any(axis=1) & m[y_start:y_hem + 1, xc + 1:].any(axis=1)
    gap = ~centre & both
    filled = np.flatnonzero(~gap)
    first = int(filled[-1]) + 1 if filled.size else 0
    if first >= gap.size:
        return None
    return y_start + first


def find_bottom_landmarks(mask: np.ndarray) -> LandmarkResult:
    """Landmarks (7, 2) float32 in BOTTOM_LANDMARK_NAMES order and kind ("trousers", "shorts", "skirt").

    Args:
        mask: (H, W) uint8, >= 128 = cloth (one garment, upright, front view).
    Raises:
        LandmarkError: too small, or no waistband (a top's silhouette), or no hem.
    """
    m, y0, y1, xc = silhouette(mask)
    height = y1 - y0 + 1
    _yw, wl, wr = _waistband(m, y0, y1, xc)
    xc = (wl + wr) // 2
    crotch_y = _crotch_row(m, _yw + 1, y1, xc)
    if crotch_y is not None and y1 - crotch_y < MIN_LEG_GAP_ROWS * height:
        crotch_y = None
    w = m.shape[1]
    top_rows = (y0, y0 + max(int(WAIST_PART * height), 3))
    waist_r, waist_l = _corner(m, top_rows, (0, xc + 1), -1.0, -1.0), _corner(m, top_rows, (xc, w), 1.0, -1.0)
    hem_rows = (y1 + 1 - max(int(HEM_PART * height), 3), y1 + 1)
    if crotch_y is None:
        middle = np.array([xc, float(y1)])
        pts = [waist_r, waist_l, middle, _corner(m, hem_rows, (0, xc + 1), -1.0, 1.0), middle, middle,
               _corner(m, hem_rows, (xc, w), 1.0, 1.0)]
        kind = "skirt"
    else:
        legs = []
        for cols in ((0, xc), (xc + 1, w)):   # image left = the wearer's right leg
            rows = np.flatnonzero(m[:, cols[0]:cols[1]].any(axis=1))
            leg_rows = (max(int(rows[-1]) + 1 - max(int(HEM_PART * height), 3), crotch_y), int(rows[-1]) + 1)
            legs.append((_corner(m, leg_rows, cols, -1.0, 1.0), _corner(m, leg_rows, cols, 1.0, 1.0)))
        (r_out, r_in), (l_in, l_out) = legs
        pts = [waist_r, waist_l, np.array([xc, crotch_y], np.float64), r_out, r_in, l_in, l_out]
        leg_len = (r_out[1] + l_out[1]) / 2 - crotch_y
        kind = "shorts" if leg_len < SHORTS_LEG * (waist_l[0] - waist_r[0]) else "trousers"
    points = np.stack(pts).astype(np.float32)
    if points.shape[0] != len(BOTTOM_LANDMARK_NAMES):
        raise LandmarkError("internal: bottom landmarks miscounted")
    return LandmarkResult(points=points, kind=kind)


def find_dress_landmarks(mask: np.ndarray) -> LandmarkResult:
    """Landmarks (11, 2) float32 in DRESS_LANDMARK_NAMES order; kind "dress".

    Raises:
        LandmarkError: too small, no waist, a skirt part too short (a top), or a bodice without a top's shape.
    """
    m, y0, y1, xc = silhouette(mask)
    height = y1 - y0 + 1
    lo, hi = (y0 + int(f * height) for f in DRESS_WAIST_SPAN)
    widths = np.full(hi - lo, np.inf)
    for i, y in enumerate(range(lo, hi)):
        run = _run_at(m[y], xc)
        if run is not None:
            widths[i] = run[1] - run[0] + 1
    if not np.isfinite(widths).any():
        raise LandmarkError("no waist found: the dress's centre line is not cloth between "
                            f"{DRESS_WAIST_SPAN[0]:.0%} and {DRESS_WAIST_SPAN[1]:.0%} of its height")
    # the middle of the narrowest rows (a straight waist has many of about the same width)
    narrow = np.flatnonzero(widths <= widths.min() + 2.0)
    yw = lo + int(narrow[len(narrow) // 2])
    if y1 - yw < MIN_DRESS_SKIRT * height:
        raise LandmarkError(f"the garment reaches only {y1 - yw} px below its waist ({height} px tall): this "
                            "looks like a top, not a dress - upload it with category 'top'")
    wl, wr = _run_at(m[yw], xc) or (xc, xc)
    hem_rows = (y1 + 1 - max(int(HEM_PART * height), 3), y1 + 1)
    hem_r, hem_l = _corner(m, hem_rows, (0, xc + 1), -1.0, 1.0), _corner(m, hem_rows, (xc, m.shape[1]), 1.0, 1.0)
    if (hem_l[0] - hem_r[0]) < MIN_DRESS_FLARE * (wr - wl) or height < MIN_DRESS_LENGTH * (wr - wl):
        raise LandmarkError(f"the garment is {height} px tall, {wr - wl} px wide at its waist and "
                            f"{int(hem_l[0] - hem_r[0])} px at its hem: a dress is at least {MIN_DRESS_LENGTH} "
                            f"waists tall and {MIN_DRESS_FLARE} waists wide at the hem; this looks like a top "
                            "or a bottom - upload it with that category")
    bodice = np.where(m[: yw + 1], 255, 0).astype(np.uint8)
    bodice = np.concatenate([bodice, np.zeros((mask.shape[0] - yw - 1, mask.shape[1]), np.uint8)])
    top = find_landmarks(bodice)
    pts = top.points.astype(np.float64).copy()
    pts[LANDMARK_NAMES.index("hem_right")] = hem_r
    pts[LANDMARK_NAMES.index("hem_left")] = hem_l
    points = np.concatenate([pts, np.array([[wl, yw], [wr, yw]], np.float64)]).astype(np.float32)
    if points.shape[0] != len(DRESS_LANDMARK_NAMES):
        raise LandmarkError("internal: dress landmarks miscounted")
    return LandmarkResult(points=points, kind="dress")
