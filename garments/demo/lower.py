"""Demo bottoms and dresses: outlines with known landmarks, and their painting.

Convention as garments/demo/shapes.py: (x, y) pixels on the CANVAS_W x CANVAS_H canvas, origin top-left;
each outline is built for the image-LEFT half (the wearer's RIGHT side) and mirrored about `cx`.
Landmark rows follow garments.types.BOTTOM_LANDMARK_NAMES (trousers, shorts, skirt) or DRESS_LANDMARK_NAMES.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from garments.demo import paint
from garments.demo.shapes import CANVAS_W, Shape, _bezier, _bulge, _chain, _mirror, mirror_part
from garments.types import BOTTOM_LANDMARK_NAMES, DRESS_LANDMARK_NAMES


@dataclass(frozen=True)
class LowerProportions:
    """Size knobs of a bottom or a dress, in pixels on the 768x1024 canvas (half widths from the centre).

    Bottoms use waist_*, hip_*, crotch_y (trousers, shorts; None = a skirt), hem_*; a dress also uses the
    bodice knobs (neck_hw, top_y, neck_dip, strap_w, armpit_y, body_hw) and its waist is `waist_y`.
    """

    waist_y: float = 80.0
    waist_hw: float = 165.0
    hip_y: float = 260.0
    hip_hw: float = 186.0
    crotch_y: float | None = 350.0
    hem_y: float = 985.0
    hem_out: float = 176.0       # outer hem corner's distance from the centre line
    hem_in: float = 34.0         # inner hem corner's distance (trousers), or the hem's curve (skirt)
    neck_hw: float = 70.0
    top_y: float = 60.0
    neck_dip: float = 40.0
    strap_w: float = 46.0
    armpit_y: float = 270.0
    body_hw: float = 150.0


def _finish(left: np.ndarray, cx: float, rows: dict[str, tuple[float, float]], names: tuple[str, ...],
            parts: dict[str, np.ndarray]) -> Shape:
    right = _mirror(left[::-1], cx)
    outline = np.concatenate([left, right[1:-1]], axis=0).astype(np.float32)
    lm = []
    for name in names:
        if name in rows:
            lm.append(rows[name])
            continue
        base = name.replace("_left", "_right")
        x, y = rows[base]
        lm.append((2 * cx - x, y))
    return Shape(outline=outline, landmarks=np.asarray(lm, np.float32), parts=parts, cx=cx)


def build_bottom(p: LowerProportions, cx: float = CANVAS_W / 2) -> Shape:
    """Outline and landmarks of trousers / shorts (crotch_y set) or a skirt (crotch_y None)."""
    waist, hip = (cx - p.waist_hw, p.waist_y), (cx - p.hip_hw, p.hip_y)
    hem_out = (cx - p.hem_out, p.hem_y)
    outer = _chain(np.array([(cx, p.waist_y), waist]), _bulge(waist, hip, 6.0), _bulge(hip, hem_out, -3.0))
    if p.crotch_y is not None:
        hem_in = (cx - p.hem_in, p.hem_y)
        crotch = (cx, p.crotch_y)
        inseam = _bezier(hem_in, (cx - p.hem_in * 0.7, (p.crotch_y + p.hem_y) / 2), (cx - 6.0, p.crotch_y + 20.0))
        left = _chain(outer, np.array([hem_out, hem_in]), inseam, np.array([inseam[-1], crotch]))
        rows = {"waist_right": waist, "crotch": crotch, "hem_right_outer": hem_out, "hem_right_inner": hem_in,
                "hem_left_inner": (cx + p.hem_in, p.hem_y), "hem_left_outer": (cx + p.hem_out, p.hem_y)}
        parts = {"inseam": inseam}
    else:
        middle = (cx, p.hem_y + p.hem_in)
        hem = _bezier(hem_out, ((hem_out[0] + cx) / 2, p.hem_y + p.hem_in), middle, 24)
        left = _chain(outer, hem)
        rows = {"waist_right": waist, "crotch": middle, "hem_right_outer": hem_out, "hem_right_inner": middle,
                "hem_left_inner": middle, "hem_left_outer": (cx + p.hem_out, p.hem_y)}
        parts = {"hem": hem}
    parts["side"] = outer[1:]
    return _finish(left, cx, rows, BOTTOM_LANDMARK_NAMES, parts)


def build_dress(p: LowerProportions, cx: float = CANVAS_W / 2) -> Shape:
    """Outline and landmarks of a sleeveless dress: a tank's bodice, a waist, a flared skirt."""
    neck_c, hps = (cx, p.top_y + p.neck_dip), (cx - p.neck_hw, p.top_y)
    strap_out = (cx - p.neck_hw - p.strap_w, p.top_y + 6.0)
    armpit = (cx - p.body_hw, p.armpit_y)
    waist, hip = (cx - p.waist_hw, p.waist_y), (cx - p.hip_hw, p.hip_y)
    hem = (cx - p.hem_out, p.hem_y)
    middle = (cx, p.hem_y + p.hem_in)
    armhole = _bezier(strap_out, (cx - p.neck_hw - p.strap_w - 8.0, p.armpit_y - 40.0), armpit)
    hem_line = _bezier(hem, ((hem[0] + cx) / 2, p.hem_y + p.hem_in), middle, 24)
    left = _chain(_bulge(neck_c, hps, -4.0, 16), np.array([hps, strap_out]), armhole, _bulge(armpit, waist, -4.0),
                  _bulge(waist, hip, 4.0), _bulge(hip, hem, -2.0), hem_line)
    rows = {"collar": neck_c, "shoulder_right": strap_out, "armpit_right": armpit, "hem_right": hem,
            "cuff_right": strap_out, "waist_right": waist}
    parts = {"armhole": armhole, "hem": hem_line, "neck": _bulge(neck_c, hps, -4.0, 16),
             "waist": np.array([waist, (cx, p.waist_y)])}
    return _finish(left, cx, rows, DRESS_LANDMARK_NAMES, parts)


def _fold_lines(size: tuple[int, int], rng: np.random.Generator, span_y: tuple[float, float],
                count: int) -> np.ndarray:
    """Soft vertical drape folds between y = span_y[0] and span_y[1]: (H, W) float32 roughly in [-1, 1]."""
    top, bottom = span_y
    w, h = size
    xs = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :] * (w / 2)
    yy = np.arange(h, dtype=np.float32)[:, None]
    out = np.zeros((h, w), np.float32)
    span = max(bottom - top, 1.0)
    for _ in range(count):
        x0 = rng.uniform(-0.45, 0.45) * w
        amp = rng.uniform(-0.8, 0.8)
        width = rng.uniform(10.0, 22.0)
        t = np.clip((yy - top) / span, 0.0, 1.0)
        centre = x0 + rng.uniform(-30, 30) * t
        out += amp * np.clip(np.sin(np.pi * t), 0.0, None) ** 0.7 * np.exp(-((xs - centre) ** 2) / (2 * width**2))
    return out


def lower_details(kind: str, s: Shape, p: LowerProportions, size: tuple[int, int],
                  rng: np.random.Generator) -> np.ndarray:
    """Multiplicative shading of a bottom's or a dress's folds, seams and stitching: (H, W) float32."""
    top = p.top_y if kind == "dress" else p.waist_y
    shade = 1.0 + 0.12 * _fold_lines(size, rng, (top + 40.0, p.hem_y), 9)
    seams: list[np.ndarray] = []
    stitches: list[np.ndarray] = []
    cx = s.cx
    if kind == "dress":
        seams += [s.parts["waist"], mirror_part(s.parts["waist"], cx)]
        for line in paint.both_sides(s, paint.offset_line(s.parts["armhole"], -7.0)):
            stitches += paint.dashed(line, 6.0, 3.0)
        stitches += paint.both_sides(s, paint.offset_line(s.parts["neck"], 7.0))
    else:
        band = np.array([[cx - p.waist_hw + 3, p.waist_y + 34.0], [cx + p.waist_hw - 3, p.waist_y + 34.0]])
        seams.append(band)
        stitches += paint.dashed(band - np.array([0.0, 6.0])) + paint.dashed(np.array([[cx - p.waist_hw + 4,
                                                                                       p.waist_y + 6.0],
                                                                                      [cx + p.waist_hw - 4,
                                                                                       p.waist_y + 6.0]]))
        seams += paint.both_sides(s, paint.offset_line(s.parts["side"], -3.0))
        if p.crotch_y is not None:   # fly, J-stitch, front pockets, inseam
            fly = np.array([[cx + 2, p.waist_y + 36], [cx + 2, p.crotch_y - 10]], np.float64)
            j = _bezier((cx + 34, p.waist_y + 36), (cx + 36, p.crotch_y - 20), (cx + 2, p.crotch_y - 14))
            seams.append(fly)
            stitches += paint.dashed(j, 6.0, 3.0)
            pocket = _bezier((cx - p.waist_hw + 70, p.waist_y + 36), (cx - p.waist_hw + 60, p.waist_y + 110),
                             (cx - p.waist_hw + 8, p.waist_y + 120))
            seams += paint.both_sides(s, pocket)
            stitches += [d for line in paint.both_sides(s, paint.offset_line(pocket, 6.0))
                         for d in paint.dashed(line, 6.0, 3.0)]
            seams += paint.both_sides(s, s.parts["inseam"])
        else:                         # a skirt's pleats fanning out from under the waistband
            for k in range(-3, 4):
                x_top, x_bot = cx + k * p.waist_hw / 4, cx + k * p.hem_out / 4
                seams.append(np.array([[x_top, p.waist_y + 60.0], [x_bot, p.hem_y - 12.0]]))
    hem_y = p.hem_y - 18.0
    hem = np.array([[cx - p.hem_out + 6, hem_y], [cx + p.hem_out - 6, hem_y]])
    stitches += paint.dashed(hem, 8.0, 4.0)
    shade -= 0.26 * paint.stroke(size, seams, 2)
    shade -= 0.10 * paint.stroke(size, [paint.offset_line(x, 3.0) for x in seams], 3)
    shade -= 0.22 * paint.stroke(size, stitches, 1)
    return shade.astype(np.float32)
