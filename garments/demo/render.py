"""Render one demo garment (a product photo on an off-white backdrop) from a Design.

Output convention: image (1024, 768, 3) uint8 RGB; mask (1024, 768) uint8 0/255 = the exact silhouette
(anti-aliased coverage >= 0.5); landmarks (N, 2) float32 (x, y) pixels in the order of
garments.types.landmark_names(category) (LANDMARK_NAMES for a top).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from garments.demo import paint
from garments.demo.lower import LowerProportions, build_bottom, build_dress, lower_details
from garments.demo.shapes import CANVAS_H, CANVAS_W, Proportions, Shape, build_top, mirror_part

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Design:
    slug: str
    name: str
    kind: str                      # "tshirt", "longsleeve", "tank", "shirt", "hoodie"; "trousers", "shorts",
    colour: RGB                    # "skirt"; "dress" (garments.types.KIND_CATEGORY)
    props: Proportions = field(default_factory=Proportions)
    pattern: str = "solid"         # "solid", "stripes", "print"
    accent: RGB = (30, 40, 70)     # stripe / print colour
    weave: str = "jersey"          # "jersey", "twill", "fleece", "rib"
    backdrop: RGB = (237, 234, 227)
    shadow: float = 0.22
    seed: int = 0
    lower: LowerProportions | None = None   # a bottom's or a dress's proportions (then `props` is unused)


@dataclass
class Rendered:
    design: Design
    image: np.ndarray
    mask: np.ndarray
    landmarks: np.ndarray


def _shade_details(d: Design, s: Shape, size: tuple[int, int], alpha: np.ndarray) -> np.ndarray:
    """Multiplicative shading from construction details (seams, stitching, ribbing): (H, W) float32."""
    p = s.props
    shade = np.ones(size[::-1], np.float32)
    seams: list[np.ndarray] = []
    stitches: list[np.ndarray] = []
    if p.sleeve != "none":
        seams += paint.both_sides(s, s.parts["armhole"])
        cuff = s.parts["cuff"]
        axis = (s.landmarks[7] - (s.landmarks[1] + s.landmarks[3]) / 2)
        axis /= max(float(np.hypot(*axis)), 1e-6)
        band = 34.0 if p.sleeve == "long" else 20.0
        inner = cuff - axis[None, :] * band
        for line in paint.both_sides(s, inner):
            stitches += paint.dashed(line) if p.sleeve == "short" else [line]
    else:
        for line in paint.both_sides(s, paint.offset_line(s.parts["armhole"], -7.0)):
            stitches += paint.dashed(line, 6.0, 3.0)
    if not p.hood:
        seams += paint.both_sides(s, s.parts["shoulder"])
    hem = s.parts["hem"]
    hem_band = 46.0 if (p.hood or p.sleeve == "long") and d.kind != "shirt" else 22.0
    for line in paint.both_sides(s, hem - np.array([0.0, hem_band])):
        stitches += paint.dashed(line, 8.0, 4.0)
    shade -= 0.28 * paint.stroke(size, seams, 2)
    shade -= 0.10 * paint.stroke(size, [paint.offset_line(x, 3.0) for x in seams], 3)   # seam allowance ridge
    shade -= 0.22 * paint.stroke(size, stitches, 1)
    if p.hood or (p.sleeve == "long" and d.kind != "shirt"):  # ribbed cuffs and waistband
        rib = 0.5 + 0.5 * np.sin(2 * np.pi * np.arange(size[0], dtype=np.float32) / 5.0)
        bands = paint.stroke(size, paint.both_sides(s, hem - np.array([0.0, hem_band / 2])), int(hem_band))
        for cuff in paint.both_sides(s, s.parts["cuff"]):
            axis = (s.landmarks[7] - (s.landmarks[1] + s.landmarks[3]) / 2)
            axis /= max(float(np.hypot(*axis)), 1e-6)
            if cuff[0, 0] > s.cx:
                axis = axis * np.array([-1.0, 1.0])
            bands = np.maximum(bands, paint.stroke(size, [cuff - axis * 17.0], 34))
        shade *= 1.0 - bands * (0.05 + 0.07 * rib[None, :])
    shade -= 0.12 * paint.stroke(size, [paint.offset_line(s.parts["side"], 2.0)], 2)
    shade -= 0.12 * paint.stroke(size, [mirror_part(paint.offset_line(s.parts["side"], 2.0), s.cx)], 2)
    return np.clip(shade * alpha + (1 - alpha), 0.3, 1.2)


def _neck(d: Design, s: Shape, size: tuple[int, int], colour: np.ndarray, shade: np.ndarray) -> None:
    """Neckline: inside-back visible above the front neckline, rib binding, or a hood opening."""
    p = s.props
    cx = s.cx
    if p.hood:
        inner = np.array([[cx - 74, 70], [cx - 84, 150], [cx - 40, 205], [cx, 222],
                          [cx + 40, 205], [cx + 84, 150], [cx + 74, 70], [cx, 52]], np.float64)
        t = np.linspace(0, 1, 6)[:, None]
        pts = np.concatenate([inner[i] * (1 - t) + inner[(i + 1) % 8] * t for i in range(8)])
        pts = cv2.approxPolyDP(pts.astype(np.float32), 0.5, True).reshape(-1, 2)
        smooth = pts
        for _ in range(3):  # Chaikin corner cutting: a smooth hood opening
            a, b = smooth, np.roll(smooth, -1, axis=0)
            smooth = np.concatenate([0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b], axis=1).reshape(-1, 2)
        opening = paint.fill_alpha(smooth, size)
        shade *= 1.0 - 0.45 * opening * (0.6 + 0.4 * np.clip(np.mgrid[0:size[1], 0:size[0]][0] / 220.0, 0, 1))
        shade -= 0.25 * paint.stroke(size, [smooth], 2, closed=True)
        edge = paint.stroke(size, [smooth], 16, closed=True) * (1 - opening)
        shade *= 1.0 - 0.08 * edge
        for side in (-1, 1):  # drawstrings with aglets
            x0 = cx + side * 30
            cord = np.array([[x0, 212], [x0 + side * 6, 300], [x0 + side * 2, 372]], np.float64)
            cord_a = paint.stroke(size, [cord], 5)
            colour[:] = colour * (1 - cord_a[..., None]) + np.array([0.93, 0.92, 0.9], np.float32) * cord_a[..., None]
            shade -= 0.18 * paint.stroke(size, [cord + np.array([2.0, 0])], 1)
            tip = paint.stroke(size, [np.array([[x0 + side * 2, 360], [x0 + side * 2, 384]], np.float64)], 7)
            colour[:] = colour * (1 - tip[..., None]) + np.array([0.75, 0.75, 0.74], np.float32) * tip[..., None]
        pocket = np.array([[cx - 130, 828], [cx - 150, 660], [cx - 95, 600], [cx + 95, 600],
                           [cx + 150, 660], [cx + 130, 828]], np.float64)
        shade -= 0.22 * paint.stroke(size, [pocket], 2)
        for line in [paint.offset_line(pocket, -7.0)]:
            shade -= 0.16 * paint.stroke(size, paint.dashed(line), 1)
        shade -= 0.18 * paint.stroke(size, [pocket[1:3] + np.array([6.0, 0])], 5)
        shade -= 0.18 * paint.stroke(size, [pocket[3:5] - np.array([6.0, 0])], 5)
        return
    front = s.parts["front_neck"]
    neck_poly = np.concatenate([front, mirror_part(front[::-1], cx)[1:]])
    top = np.array([[cx + p.neck_hw, p.top_y - 4], [cx, p.top_y + p.neck_dip - 4], [cx - p.neck_hw, p.top_y - 4]])
    inside = paint.fill_alpha(np.concatenate([neck_poly, top]), size)
    if d.kind == "shirt":   # the collar stand wraps the neck: only a light shadow inside it
        shade *= 1.0 - 0.14 * inside
        shade -= 0.2 * paint.stroke(size, [neck_poly], 2)
        _shirt_front(s, size, colour, shade)
        return
    shade *= 1.0 - 0.32 * inside                     # the inside back of the garment, in shadow
    rib_w = 14 if d.kind != "tank" else 10
    binding = paint.stroke(size, [paint.offset_line(neck_poly, -rib_w / 2)], rib_w)
    ribs = 0.5 + 0.5 * np.sin(2 * np.pi * np.arange(size[0], dtype=np.float32) / 4.0)
    shade *= 1.0 - binding * (0.03 + 0.06 * ribs[None, :])
    shade -= 0.3 * paint.stroke(size, [neck_poly], 2)
    shade -= 0.18 * paint.stroke(size, [paint.offset_line(neck_poly, -rib_w)], 1)


def _shirt_front(s: Shape, size: tuple[int, int], colour: np.ndarray, shade: np.ndarray) -> None:
    cx, p = s.cx, s.props
    y0 = p.top_y + p.front_neck
    for side in (-1, 1):  # collar points lying over the neckline
        pts = np.array([[cx + side * (p.neck_hw + 4), p.top_y - 4], [cx + side * 4, y0 + 14],
                        [cx + side * 62, y0 + 62], [cx + side * (p.neck_hw + 34), p.top_y + 46]], np.float64)
        leaf = paint.fill_alpha(pts, size)
        shade *= 1.0 + 0.05 * leaf                  # the collar leaf sits proud of the body and catches light
        shade -= 0.35 * paint.stroke(size, [pts[1:]], 2)
        shade -= 0.12 * paint.stroke(size, paint.dashed(paint.offset_line(pts[1:], side * 6.0), 5, 3), 1)
        shade *= 1.0 - 0.18 * paint.stroke(size, [pts[1:] + np.array([side * 3.0, 5.0])], 6)
    placket = [np.array([[cx - 16, y0], [cx - 16, p.hem_y + 4]]), np.array([[cx + 16, y0], [cx + 16, p.hem_y + 4]])]
    shade -= 0.2 * paint.stroke(size, placket, 1)
    shade -= 0.1 * paint.stroke(size, [x + np.array([4.0, 0]) for x in placket], 2)
    for y in np.linspace(y0 + 45, p.hem_y - 70, 6):
        button = np.zeros(size[::-1], np.uint8)
        cv2.circle(button, (int(cx * 16), int(y * 16)), 9 * 16, 255, -1, cv2.LINE_AA, 4)
        b = button.astype(np.float32)[..., None] / 255.0
        colour[:] = colour * (1 - b) + np.array([0.95, 0.94, 0.91], np.float32) * b
        holes = [np.array([[cx - 3.0, y], [cx - 2.9, y]]), np.array([[cx + 3.0, y], [cx + 3.1, y]])]
        shade -= 0.3 * paint.stroke(size, holes, 3)
        ring = np.zeros(size[::-1], np.uint8)
        cv2.circle(ring, (int(cx * 16), int(y * 16)), 9 * 16, 255, 1, cv2.LINE_AA, 4)
        shade -= 0.2 * ring.astype(np.float32) / 255.0
    pocket = np.array([[cx + 50, 380], [cx + 50, 500], [cx + 95, 515], [cx + 140, 500], [cx + 140, 380]], np.float64)
    shade -= 0.2 * paint.stroke(size, [pocket], 1)
    shade -= 0.12 * paint.stroke(size, paint.dashed(paint.offset_line(pocket, 4.0), 5, 3), 1)


def _pattern(d: Design, s: Shape, size: tuple[int, int], folds: np.ndarray) -> np.ndarray:
    w, h = size
    base = np.empty((h, w, 3), np.float32)
    base[:] = np.asarray(d.colour, np.float32) / 255.0
    accent = np.asarray(d.accent, np.float32) / 255.0
    if d.pattern == "stripes":
        yy = np.mgrid[0:h, 0:w][0].astype(np.float32) + 5.0 * folds
        wave = np.sin(2 * np.pi * yy / 44.0)
        on = np.clip(0.5 + 4.0 * (wave - 0.25), 0, 1)[..., None]   # ~1 px anti-aliased stripe edges
        base = base * (1 - on) + accent * on
    elif d.pattern == "print":
        # Drawn premultiplied: the same shapes go into a colour layer and a coverage layer, so anti-aliased
        # edges blend with the fabric instead of with black.
        art = np.zeros((h, w, 3), np.uint8)
        cover = np.zeros((h, w), np.uint8)
        cx, y = int(s.cx), 470
        sun = (245, 170, 40)
        sun_c = (cx * 16, (y - 40) * 16)
        hills = np.array([[cx - 120, y + 60], [cx - 60, y - 10], [cx - 10, y + 35], [cx + 45, y - 30],
                          [cx + 120, y + 60]], np.float64)
        for layer, sun_col, hill_col, bar_col in ((art, sun, tuple(int(c) for c in d.accent), (250, 246, 236)),
                                                  (cover, 255, 255, 255)):
            cv2.circle(layer, sun_c, 62 * 16, sun_col, -1, cv2.LINE_AA, 4)
            for k in range(12):
                ang = 2 * np.pi * k / 12
                p0 = (int((cx + 78 * np.cos(ang)) * 16), int((y - 40 + 78 * np.sin(ang)) * 16))
                p1 = (int((cx + 100 * np.cos(ang)) * 16), int((y - 40 + 100 * np.sin(ang)) * 16))
                cv2.line(layer, p0, p1, sun_col, 8, cv2.LINE_AA, 4)
            cv2.fillPoly(layer, [paint._fx(hills)], hill_col, cv2.LINE_AA, paint.AA_SHIFT)
            for i, bw in enumerate((210, 150)):
                yb = y + 95 + 28 * i
                cv2.rectangle(layer, ((cx - bw // 2) * 16, yb * 16), ((cx + bw // 2) * 16, (yb + 14) * 16), bar_col,
                              -1, cv2.LINE_AA, 4)
        alpha = cover.astype(np.float32)[..., None] / 255.0
        ink = art.astype(np.float32) / 255.0              # premultiplied by alpha already
        worn = 0.9 + 0.1 * paint.fabric_texture(size, np.random.default_rng(d.seed + 99), "fleece")[..., None]
        base = (base * (1 - alpha * 0.95) + ink * worn * 0.95).astype(np.float32)
    return base


def render_garment(d: Design) -> Rendered:
    """Paint one garment photo. Deterministic for a given Design (its seed drives every random choice)."""
    if d.lower is not None:
        return _render_lower(d, d.lower)
    rng = np.random.default_rng(d.seed)
    size = (CANVAS_W, CANVAS_H)
    shape = build_top(d.props)
    alpha = paint.fill_alpha(shape.outline, size)
    folds = paint.fold_field(shape, size, rng)
    colour = _pattern(d, shape, size, folds)
    shade = _light_and_rounding(alpha) * (1.0 + 0.13 * folds)
    shade *= _shade_details(d, shape, size, alpha)
    _neck(d, shape, size, colour, shade)
    return _on_backdrop(d, rng, colour, shade, alpha=alpha, landmarks=shape.landmarks)


def _render_lower(d: Design, p: LowerProportions) -> Rendered:
    """Paint a bottom or a dress (Design.lower set): fabric, folds, seams, backdrop, drop shadow."""
    rng = np.random.default_rng(d.seed)
    size = (CANVAS_W, CANVAS_H)
    shape = build_dress(p) if d.kind == "dress" else build_bottom(p)
    alpha = paint.fill_alpha(shape.outline, size)
    colour = np.empty((CANVAS_H, CANVAS_W, 3), np.float32)
    colour[:] = np.asarray(d.colour, np.float32) / 255.0
    shade = _light_and_rounding(alpha) * lower_details(d.kind, shape, p, size, rng)
    shade = np.clip(shade * alpha + (1 - alpha), 0.3, 1.2)
    return _on_backdrop(d, rng, colour, shade, alpha=alpha, landmarks=shape.landmarks)


def _light_and_rounding(alpha: np.ndarray) -> np.ndarray:
    """(H, W) float32: the studio light (brighter at the top) times the rounding of the cloth at its edges."""
    dist = paint.edge_distance(alpha)
    yy = np.mgrid[0:CANVAS_H, 0:CANVAS_W][0].astype(np.float32)
    light = 1.04 - 0.06 * yy / CANVAS_H
    rounding = 1.0 - 0.16 * np.exp(-dist / 9.0) + 0.03 * np.exp(-((dist - 22.0) / 14.0) ** 2)
    return light * rounding


def _on_backdrop(d: Design, rng: np.random.Generator, colour: np.ndarray, shade: np.ndarray, *, alpha: np.ndarray,
                 landmarks: np.ndarray) -> Rendered:
    """The shaded fabric over the design's backdrop and drop shadow: the rendered garment and its mask."""
    size = (CANVAS_W, CANVAS_H)
    fabric = paint.fabric_texture(size, rng, d.weave)
    garment = np.clip(colour * (shade * fabric)[..., None], 0, 1)
    backdrop = paint.background(size, d.backdrop, rng)
    backdrop *= (1.0 - paint.drop_shadow(alpha, d.shadow))[..., None]
    a = alpha[..., None]
    image = np.clip((garment * a + backdrop * (1 - a)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    mask = np.where(alpha >= 0.5, 255, 0).astype(np.uint8)
    return Rendered(design=d, image=image, mask=mask, landmarks=landmarks.copy())
