"""Garment outlines for the demo catalog: smooth closed silhouettes with known landmarks.

Convention: pixel coordinates (x, y), origin top-left; the canvas is CANVAS_W x CANVAS_H. Every shape is
built for the image-LEFT half (the wearer's RIGHT side) and mirrored about the centre line `cx`, so the
silhouettes are symmetric and the landmarks of both sides are known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from garments.types import LANDMARK_NAMES

CANVAS_W = 768
CANVAS_H = 1024
SAMPLES_PER_CURVE = 48

Point = tuple[float, float]


@dataclass(frozen=True)
class Proportions:
    """Size knobs of a sleeved/sleeveless top, in pixels on the 768x1024 canvas."""

    body_hw: float = 190.0       # half width of the body at the armpits
    hem_hw: float = 186.0        # half width at the hem corners
    neck_hw: float = 78.0        # half width of the neck opening at the high shoulder points
    top_y: float = 138.0         # y of the high shoulder points
    neck_dip: float = 16.0       # back neckline dip below top_y (what the mask shows at the centre)
    front_neck: float = 70.0     # depth of the front neckline below top_y (drawn inside the garment)
    shoulder_drop: float = 52.0  # shoulder tip below top_y
    shoulder_out: float = 20.0   # shoulder tip outside the body half width
    armpit_y: float = 335.0
    hem_y: float = 905.0
    hem_curve: float = 6.0       # hem centre below the hem corners (shirt tails use more)
    sleeve: str = "short"        # "short", "long" or "none"
    sleeve_len: float = 190.0    # along the sleeve axis, from the shoulder tip
    sleeve_angle: float = 38.0   # degrees of the sleeve axis from straight down
    cuff_w: float = 96.0         # width of the sleeve opening
    hood: bool = False


@dataclass
class Shape:
    outline: np.ndarray                     # (N, 2) float32 closed polygon, (x, y) pixels
    landmarks: np.ndarray                   # (9, 2) float32 in LANDMARK_NAMES order
    parts: dict[str, np.ndarray] = field(default_factory=dict)  # named open polylines for details
    props: Proportions = field(default_factory=Proportions)
    cx: float = CANVAS_W / 2


def _bezier(p0: Point, p1: Point, p2: Point, n: int = SAMPLES_PER_CURVE) -> np.ndarray:
    t = np.linspace(0.0, 1.0, n, dtype=np.float64)[:, None]
    a, b, c = (np.asarray(p, dtype=np.float64) for p in (p0, p1, p2))
    return (1 - t) ** 2 * a + 2 * (1 - t) * t * b + t**2 * c


def _bulge(p0: Point, p1: Point, amount: float, n: int = SAMPLES_PER_CURVE) -> np.ndarray:
    """Quadratic curve from p0 to p1 whose middle is pushed `amount` px to the left of the travel direction."""
    a, b = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    d = b - a
    normal = np.array([d[1], -d[0]]) / max(float(np.hypot(*d)), 1e-9)
    ctrl = (a + b) / 2 + normal * amount * 2
    return _bezier(tuple(a), tuple(ctrl), tuple(b), n)


def _chain(*pieces: np.ndarray) -> np.ndarray:
    out = [pieces[0]]
    for p in pieces[1:]:
        out.append(p[1:])
    return np.concatenate(out, axis=0)


def _mirror(points: np.ndarray, cx: float) -> np.ndarray:
    m = points.copy()
    m[..., 0] = 2 * cx - m[..., 0]
    return m


def build_top(p: Proportions, cx: float = CANVAS_W / 2) -> Shape:
    """Outline and landmarks of a top (t-shirt, long sleeve, tank, shirt, hoodie body)."""
    hps = (cx - p.neck_hw, p.top_y)
    neck_c = (cx, p.top_y + p.neck_dip)
    armpit = (cx - p.body_hw, p.armpit_y)
    hem = (cx - p.hem_hw, p.hem_y)
    hem_c = (cx, p.hem_y + p.hem_curve)

    if p.sleeve == "none":
        # Tank: a strap from the neck to the strap's outer corner, then a deep armhole to the armpit.
        strap_out = (cx - p.neck_hw - 52.0, p.top_y + 6.0)
        tip = strap_out
        armhole = _bezier(strap_out, (cx - p.neck_hw - 60.0, p.armpit_y - 40.0), armpit)
        left = _chain(_bulge(neck_c, hps, -4.0, 16), np.array([hps, strap_out]), armhole)
        cuff = np.array(tip)
        parts = {"armhole": armhole}
    else:
        tip = (cx - p.body_hw - p.shoulder_out, p.top_y + p.shoulder_drop)
        ang = np.deg2rad(p.sleeve_angle)
        axis = np.array([-np.sin(ang), np.cos(ang)])
        across = np.array([np.cos(ang), np.sin(ang)])  # from the sleeve's top edge toward its underside
        root = (np.asarray(tip) + np.asarray(armpit)) / 2
        cuff = root + axis * p.sleeve_len
        cuff_out = tuple(cuff - across * p.cuff_w / 2)
        cuff_in = tuple(cuff + across * p.cuff_w / 2)
        if p.hood:
            base = (cx - p.neck_hw - 38.0, p.top_y + 28.0)
            neck_c = (cx, 40.0)
            hood = _chain(
                _bezier(neck_c, (cx - p.neck_hw - 30.0, 36.0), (cx - p.neck_hw - 44.0, 110.0)),
                _bezier((cx - p.neck_hw - 44.0, 110.0), (cx - p.neck_hw - 46.0, p.top_y + 10.0), base, 16),
            )
            shoulder = _bulge(base, tip, 5.0)
            top = _chain(hood, shoulder)
        else:
            top = _chain(_bulge(neck_c, hps, -5.0, 24), _bulge(hps, tip, 3.0))
        left = _chain(
            top,
            _bulge(tip, cuff_out, 4.0),
            np.array([cuff_out, cuff_in]),
            _bulge(cuff_in, armpit, -3.0 if p.sleeve == "short" else 2.0),
        )
        parts = {"armhole": _bulge(tip, armpit, 10.0, 24), "cuff": np.array([cuff_out, cuff_in])}
    side = _bulge(armpit, hem, -4.0)
    hem_line = _bezier(hem, ((hem[0] + cx) / 2, p.hem_y + p.hem_curve), hem_c, 24)
    left = _chain(left, side, hem_line)

    right = _mirror(left[::-1], cx)
    outline = np.concatenate([left, right[1:-1]], axis=0).astype(np.float32)

    collar = (cx, p.top_y + 28.0) if p.hood else neck_c
    lm_left = {"collar": collar, "shoulder": tip, "armpit": armpit, "hem": hem, "cuff": tuple(cuff)}
    rows = []
    for name in LANDMARK_NAMES:
        if name == "collar":
            rows.append(collar)
            continue
        part, side_name = name.split("_")
        x, y = lm_left[part]
        rows.append((x, y) if side_name == "right" else (2 * cx - x, y))
    parts["side"] = side
    parts["hem"] = hem_line
    parts["front_neck"] = _bezier(hps, (cx - p.neck_hw * 0.55, p.top_y + p.front_neck), (cx, p.top_y + p.front_neck))
    parts["shoulder"] = np.array([hps, tip])
    return Shape(outline=outline, landmarks=np.asarray(rows, dtype=np.float32), parts=parts, props=p, cx=cx)


def mirror_part(points: np.ndarray, cx: float) -> np.ndarray:
    """The same polyline on the other side of the centre line."""
    return _mirror(points, cx)
