"""Landmark pairs (garment px -> person px) for a bottom or a dress: what the TPS warp is fitted to.

Convention: garment points are (x, y) pixels of the garment image, body points (x, y) pixels of the
person image; sides are the wearer's (garments.types.BOTTOM_LANDMARK_NAMES / DRESS_LANDMARK_NAMES).

    trousers, shorts   the waist corners go to the body's waistband (viton.geometric.legs), the crotch to
                       its crotch; each leg runs along its own leg path (thigh, then shin): a garment
                       point d px down the leg lands d x scale px along the path, so a leg bends at the
                       knee as a sleeve at the elbow, and the hem lands where the garment's length puts it
    skirt              hangs from the waistband: one similarity (waist corners onto the body's), legs
                       not followed
    dress              its bodice is a top ending at the natural waist (viton.geometric.warp's seams,
                       armpits, sleeves); its skirt hangs from that waist by the bodice's similarity
`scale` is garment px -> person px: the waist's width ratio for a bottom, the shoulder seams' for a dress.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from viton.geometric import warp
from viton.geometric.body import BodyFrame
from viton.geometric.legs import LegFrame, point_along
from viton.geometric.warp import Similarity

WAIST_R, WAIST_L, CROTCH, HEM_R_OUT, HEM_R_IN, HEM_L_IN, HEM_L_OUT = range(7)
DRESS_WAIST_R, DRESS_WAIST_L = 9, 10
KNEE_POINTS_MARGIN = 1.15   # a leg gets knee points only when it reaches this far past the knee
DRESS_WAIST_AT = 0.62       # the natural waist: this far from the shoulder line to the hip joints
MIN_SEPARATION = 0.08       # x body scale: closer control points are dropped (warp.MIN_SEPARATION)


@dataclass(frozen=True)
class LowerPlan:
    """What the warp and the protected regions need.

    Attributes:
        garment_pts, body_pts: (N, 2) float64 landmark pairs for the TPS.
        sim: garment px -> person px similarity the TPS models the residual of.
        scale: |sim.a|, garment px -> person px.
        hems: per leg (trousers, shorts) or once (skirt, dress): (hem point (2,), direction (2,)) on the body,
            the hem's middle and the unit direction the garment runs there (down the leg / the body).
        waist_line: (2, 2) the body's waistband (right, left corner) above which a bottom never draws;
            a dress's natural waist (its bodice above is clipped to the silhouette as a top is).
        hem_corners: (2, 2) the body's hem corners (right, left) of a skirt or a dress, beyond which
            nothing is drawn; None for trousers (their legs end where the garment ends).
        body: for a dress, the top's body frame with its hem moved to the dress's hem (protected regions).
        sleeve_lm: for a dress, the bodice's landmarks as a top's (the sleeve split); else None.
    """

    garment_pts: np.ndarray
    body_pts: np.ndarray
    sim: Similarity
    scale: float
    hems: tuple[tuple[np.ndarray, np.ndarray], ...]
    waist_line: np.ndarray
    hem_corners: np.ndarray | None
    body: BodyFrame | None = None
    sleeve_lm: np.ndarray | None = None


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.hypot(v[0], v[1]))
    return v / n if n > 1e-9 else np.array([0.0, 1.0])


def _similarity(g0: np.ndarray, g1: np.ndarray, b0: np.ndarray, b1: np.ndarray) -> Similarity:
    """The similarity mapping garment points g0, g1 exactly onto body points b0, b1."""
    gr, gl, br, bl = (complex(*p) for p in (g0, g1, b0, b1))
    if abs(gl - gr) < 1e-6:
        gl = gr + 1.0
    a = (bl - br) / (gl - gr)
    return Similarity(a, br - a * gr)


def _outward(direction: np.ndarray, outward: np.ndarray) -> np.ndarray:
    """The unit normal of `direction` on the side of `outward`."""
    n = np.array([-direction[1], direction[0]])
    return n if float(np.dot(n, outward)) >= 0 else -n


def _leg_points(lm: np.ndarray, legs: LegFrame, side: str, scale: float
                ) -> tuple[list[np.ndarray], list[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(garment points, body points, (hem middle, direction)) steering one trouser leg along its leg."""
    waist_i, out_i, in_i = (WAIST_R, HEM_R_OUT, HEM_R_IN) if side == "r" else (WAIST_L, HEM_L_OUT, HEM_L_IN)
    waist_g, out_g, in_g, crotch_g = lm[waist_i], lm[out_i], lm[in_i], lm[CROTCH]
    down_g = _unit(np.array([-(lm[WAIST_L] - lm[WAIST_R])[1], (lm[WAIST_L] - lm[WAIST_R])[0]]))
    # the leg's outer edge at crotch height (the straight line from the waist corner to the hem's outer corner)
    span = float(np.dot(out_g - waist_g, down_g))
    t = float(np.dot(crotch_g - waist_g, down_g)) / span if abs(span) > 1e-6 else 0.0
    top_out_g = waist_g + (out_g - waist_g) * t
    top_g, hem_g = (top_out_g + crotch_g) / 2, (out_g + in_g) / 2
    length_g = float(np.hypot(*(hem_g - top_g)))
    dir_g = _unit(hem_g - top_g)
    half_top, half_hem = float(np.hypot(*(top_out_g - crotch_g))) / 2, float(np.hypot(*(out_g - in_g))) / 2
    outward_b = -legs.across if side == "r" else legs.across
    path = legs.leg_path(side)
    top_b = path[0]
    thigh = _unit(path[1] - path[0])
    g_pts = [top_out_g]
    b_pts = [top_b + _outward(thigh, outward_b) * half_top * scale]
    knee_arc = float(np.hypot(*(path[1] - path[0])))
    if length_g * scale > knee_arc * KNEE_POINTS_MARGIN:
        d = knee_arc / scale
        half = half_top + (half_hem - half_top) * d / max(length_g, 1e-6)
        knee_g = top_g + dir_g * d
        out_dir_g = _outward(dir_g, top_out_g - crotch_g)
        bend = _unit(thigh + _unit(path[2] - path[1]))
        n_b = _outward(bend, outward_b)
        g_pts += [knee_g + out_dir_g * half, knee_g - out_dir_g * half]
        b_pts += [path[1] + n_b * half * scale, path[1] - n_b * half * scale]
    hem_b, hem_dir = point_along(path, length_g * scale)
    n_b = _outward(hem_dir, outward_b)
    g_pts += [out_g, in_g]
    b_pts += [hem_b + n_b * half_hem * scale, hem_b - n_b * half_hem * scale]
    return g_pts, b_pts, (hem_b, hem_dir)


def bottom_points(garment_lm: np.ndarray, legs: LegFrame, kind: str) -> LowerPlan:
    """Landmark pairs of a bottom: (7, 2) garment landmarks (BOTTOM_LANDMARK_NAMES) onto the legs."""
    lm = np.asarray(garment_lm, dtype=np.float64)
    sim = _similarity(lm[WAIST_R], lm[WAIST_L], legs.waist_r, legs.waist_l)
    scale = abs(sim.a)
    waist_line = np.stack([legs.waist_r, legs.waist_l])
    if kind == "skirt":   # hangs: the similarity alone, the hem where it puts it
        pts = lm[[WAIST_R, WAIST_L, HEM_R_OUT, HEM_L_OUT, CROTCH]]
        body = sim.apply(pts)
        hem_mid = (body[2] + body[3]) / 2
        direction = _unit(hem_mid - (legs.waist_r + legs.waist_l) / 2)
        return LowerPlan(pts, body, sim, scale, ((hem_mid, direction),), waist_line, body[[2, 3]])
    g_pts = [lm[WAIST_R], lm[WAIST_L], lm[CROTCH]]
    b_pts = [legs.waist_r, legs.waist_l, legs.crotch]
    hems = []
    for side in ("r", "l"):
        g, b, hem = _leg_points(lm, legs, side, scale)
        g_pts += g
        b_pts += b
        hems.append(hem)
    g_arr, b_arr = warp.separated(np.array(g_pts), np.array(b_pts), sim, MIN_SEPARATION * 2.0 * legs.hip_w)
    return LowerPlan(g_arr, b_arr, sim, scale, tuple(hems), waist_line, None)


def dress_points(garment_lm: np.ndarray, body: BodyFrame, legs: LegFrame) -> LowerPlan:
    """Landmark pairs of a dress: (11, 2) garment landmarks (DRESS_LANDMARK_NAMES) onto the body."""
    lm = np.asarray(garment_lm, dtype=np.float64)
    top = lm[:9].copy()
    top[warp.HEM_R], top[warp.HEM_L] = lm[DRESS_WAIST_R], lm[DRESS_WAIST_L]   # the bodice: a top ending at the waist
    seam = warp.seam_similarity(top, body)
    shoulders = (body.shoulder_r + body.shoulder_l) / 2
    waist_mid = shoulders + (legs.hip_mid - shoulders) * DRESS_WAIST_AT
    half = float(np.hypot(*(lm[DRESS_WAIST_L] - lm[DRESS_WAIST_R]))) / 2 * abs(seam.a)
    waist_r, waist_l = waist_mid - body.across * half, waist_mid + body.across * half
    bodice = dataclasses.replace(body, hem_r=waist_r, hem_l=waist_l)
    g_top, b_top, sim = warp.correspondences(top, bodice)
    waist_g = (lm[DRESS_WAIST_R] + lm[DRESS_WAIST_L]) / 2

    def hang(p: np.ndarray) -> np.ndarray:   # garment px below the waist -> body px, by the seams' similarity
        z = seam.a * complex(*(p - waist_g))
        return waist_mid + np.array([z.real, z.imag])

    hem_r, hem_l = hang(lm[warp.HEM_R]), hang(lm[warp.HEM_L])
    g_pts = np.concatenate([g_top, lm[[warp.HEM_R, warp.HEM_L]]])
    b_pts = np.concatenate([b_top, np.stack([hem_r, hem_l])])
    hem_mid = (hem_r + hem_l) / 2
    dressed = dataclasses.replace(body, hem_r=hem_r, hem_l=hem_l)
    return LowerPlan(g_pts, b_pts, sim, abs(seam.a), ((hem_mid, _unit(hem_mid - waist_mid)),),
                     np.stack([waist_r, waist_l]), np.stack([hem_r, hem_l]), body=dressed, sleeve_lm=top)
