"""Thin-plate-spline warp of a garment onto the body.

Convention: garment points are (x, y) pixels of the garment image; body points (x, y) pixels of
the person image. The TPS maps BODY -> GARMENT (backward warp: for every output pixel, where to
read the garment), fitted with kornia's `get_tps_transform` on landmark pairs and evaluated with
`warp_points_tps` on a coarse grid (every GRID_STEP_PX output pixels) that is then upsampled
bilinearly; the garment is sampled once at full resolution (cv2.remap). A TPS is smooth, so the
coarse grid loses nothing visible and keeps the cost independent of the kernel count per pixel.

Before the TPS, the garment points are mapped into the body frame by the similarity that puts
the garment's shoulder seams on the body's (`seam_similarity`), so the TPS only models the
residual deformation (well conditioned, and kornia's kernels sit where the points are).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from kornia.geometry.transform import warp_points_tps

from viton.geometric.body import BodyFrame

GRID_STEP_PX = 16           # TPS evaluated every 16 output pixels, then upsampled bilinearly
MIN_SLEEVE = 0.12           # sleeves shorter than this (x garment shoulder width) are not steered
SLEEVE_CUFF_NARROWING = 0.8  # cuff width / sleeve width at the armpit
SLEEVE_EDGE_SOFT_PX = 2.0   # ramp of the sleeve/torso split, garment pixels
MIN_SEPARATION = 0.08       # x body scale: closer control points are dropped (a TPS through two
                            # near-coincident points with different targets folds the garment)
TPS_REGULARIZATION = 1e-3   # Tikhonov weight on the kernel diagonal (normalized coordinates)
ELBOW_BEND_MARGIN = 1.2     # a sleeve bends at the elbow only when this much longer than the upper arm
MIN_FOREARM = 0.4           # x upper arm: a shorter forearm (elbow and wrist on one spot) is not followed
MAX_ELBOW_FOLD_COS = -0.5   # forearm folded back more than 120 degrees onto the upper arm: not followed
MIN_ABDUCTION_DEG = 12.0    # smallest angle between a sleeve and the torso's side line
COLLAR, SEAM_R, SEAM_L, ARMPIT_R, ARMPIT_L, HEM_R, HEM_L, CUFF_R, CUFF_L = range(9)


@dataclass(frozen=True)
class Similarity:
    """z -> a * z + b on complex numbers x + iy (rotation, uniform scale, translation)."""

    a: complex
    b: complex

    def apply(self, pts: np.ndarray) -> np.ndarray:
        """(N, 2) (x, y) -> (N, 2)."""
        z = self.a * (pts[:, 0] + 1j * pts[:, 1]) + self.b
        return np.stack([z.real, z.imag], axis=1)

    def inverse(self) -> Similarity:
        return Similarity(1 / self.a, -self.b / self.a)


def seam_similarity(garment_lm: np.ndarray, body: BodyFrame) -> Similarity:
    """The similarity garment px -> body px that maps both shoulder seams exactly."""
    gr = complex(*garment_lm[SEAM_R])
    gl = complex(*garment_lm[SEAM_L])
    br, bl = complex(*body.seam_r), complex(*body.seam_l)
    if abs(gl - gr) < 1e-6:
        gl = gr + 1.0
    a = (bl - br) / (gl - gr)
    return Similarity(a, br - a * gr)


def _has_sleeves(lm: np.ndarray) -> bool:
    width = float(np.hypot(*(lm[SEAM_L] - lm[SEAM_R])))
    return any(float(np.hypot(*(lm[c] - lm[s]))) >= MIN_SLEEVE * width
               for s, c in ((SEAM_R, CUFF_R), (SEAM_L, CUFF_L)))


def has_long_sleeves(garment_lm: np.ndarray, body: BodyFrame, scale: float) -> bool:
    """Whether the garment's sleeves reach past the elbows on this body (then they are bent
    there and the whole arm is clothed). `scale`: garment px -> body px."""
    lm = np.asarray(garment_lm, dtype=np.float64)
    for seam_i, cuff_i, shoulder, elbow in ((SEAM_R, CUFF_R, body.shoulder_r, body.elbow_r),
                                            (SEAM_L, CUFF_L, body.shoulder_l, body.elbow_l)):
        length = float(np.hypot(*(lm[cuff_i] - lm[seam_i]))) * scale
        if length > max(float(np.hypot(*(elbow - shoulder))), 1.0) * ELBOW_BEND_MARGIN:
            return True
    return False


def torso_similarity(garment_lm: np.ndarray, body: BodyFrame) -> Similarity:
    """Least-squares similarity garment px -> body px over armpits and hem corners."""
    idx = [ARMPIT_R, ARMPIT_L, HEM_R, HEM_L]
    g = garment_lm[idx, 0] + 1j * garment_lm[idx, 1]
    b = np.array([complex(*p) for p in (body.armpit_r, body.armpit_l, body.hem_r, body.hem_l)])
    gc, bc = g - g.mean(), b - b.mean()
    denom = float(np.sum(np.abs(gc) ** 2))
    a = complex(np.sum(np.conj(gc) * bc) / denom) if denom > 1e-9 else 1.0 + 0j
    return Similarity(a, complex(b.mean() - a * g.mean()))


def _perp(v: np.ndarray, sense: float) -> np.ndarray:
    """v rotated by +-90 degrees (sense = +1 or -1), unit length."""
    p = np.array([-v[1], v[0]]) * sense
    n = float(np.hypot(*p))
    return p / n if n > 1e-9 else p


def _abducted(direction: np.ndarray, down: np.ndarray, outward: np.ndarray) -> np.ndarray:
    """The upper arm's unit direction, turned outward to at least MIN_ABDUCTION_DEG from `down`
    (the torso's side line, seam -> hem corner: it leans with the body).

    A sleeve along an arm that hangs against the body or crosses in front of it would overlap the
    garment's own torso, which one smooth warp cannot draw (it folds): it goes beside the body.
    """
    outward = outward - float(np.dot(outward, down)) * down
    outward = outward / max(float(np.hypot(*outward)), 1e-9)
    angle = float(np.arctan2(np.dot(direction, outward), np.dot(direction, down)))
    limit = np.deg2rad(MIN_ABDUCTION_DEG)
    if angle >= limit:
        return direction
    return np.cos(limit) * down + np.sin(limit) * outward


def _can_bend(seam_b: np.ndarray, hem: np.ndarray, *, outward: np.ndarray, up_dir: np.ndarray,
              elbow: np.ndarray, wrist: np.ndarray, rest: float) -> bool:
    """Whether a long sleeve may bend at the elbow to follow the forearm.

    Not when the forearm reaches into the torso (arms crossed, a hand on the chest) or folds back
    onto the upper arm, nor when it is too short to trust (elbow and wrist found on one spot):
    one smooth warp of the garment cannot draw those (it folds), so the sleeve goes on straight.
    """
    fore = wrist - elbow
    length = float(np.hypot(*fore))
    if length < MIN_FOREARM * max(float(np.hypot(*(elbow - seam_b))), 1.0):
        return False
    fore_dir = fore / length
    if float(np.dot(fore_dir, up_dir)) < MAX_ELBOW_FOLD_COS:
        return False
    normal = _perp(hem - seam_b, 1.0)
    sign = float(np.dot(outward, normal))
    cuff = elbow + fore_dir * rest
    return all(float(np.dot(p - seam_b, normal)) * sign > 0 for p in (wrist, cuff))


def _sleeve_points(lm: np.ndarray, body: BodyFrame, side: str, scale: float) -> tuple[list, list]:
    """(garment points, body points) steering one sleeve along the arm."""
    seam_i, pit_i, cuff_i = (SEAM_R, ARMPIT_R, CUFF_R) if side == "r" else (SEAM_L, ARMPIT_L, CUFF_L)
    seam_g, pit_g, cuff_g = lm[seam_i], lm[pit_i], lm[cuff_i]
    axis_g = cuff_g - seam_g
    length_g = float(np.hypot(*axis_g))
    if length_g < MIN_SLEEVE * float(np.hypot(*(lm[SEAM_L] - lm[SEAM_R]))):
        return [], []
    # the side of the sleeve axis the armpit lies on, and the sleeve's width there
    cross = float(axis_g[0] * (pit_g - seam_g)[1] - axis_g[1] * (pit_g - seam_g)[0])
    sense = 1.0 if cross > 0 else -1.0
    width_g = abs(cross) / length_g * SLEEVE_CUFF_NARROWING
    inner_g = _perp(axis_g, sense)

    seam_b = body.seam_r if side == "r" else body.seam_l
    shoulder = body.shoulder_r if side == "r" else body.shoulder_l
    elbow = body.elbow_r if side == "r" else body.elbow_l
    wrist = body.wrist_r if side == "r" else body.wrist_l
    outward = -body.across if side == "r" else body.across
    hem = body.hem_r if side == "r" else body.hem_l
    length_b = length_g * scale
    upper = max(float(np.hypot(*(elbow - shoulder))), 1.0)
    side_dir = (hem - seam_b) / max(float(np.hypot(*(hem - seam_b))), 1e-6)  # the torso's side, downwards
    up_dir = _abducted((elbow - shoulder) / upper, side_dir, outward)
    g_pts, b_pts = [], []
    long_sleeve = length_b > upper * ELBOW_BEND_MARGIN
    if long_sleeve and _can_bend(seam_b, hem, outward=outward, up_dir=up_dir, elbow=elbow, wrist=wrist,
                                 rest=length_b - upper):
        t = upper / length_b
        elbow_b = seam_b + up_dir * upper
        g_pts += [seam_g + axis_g * t, seam_g + axis_g * t + inner_g * width_g / SLEEVE_CUFF_NARROWING]
        b_pts += [elbow_b, elbow_b + _perp(up_dir, sense) * width_g * scale / SLEEVE_CUFF_NARROWING]
        fore = wrist - elbow
        end_dir, start = fore / max(float(np.hypot(*fore)), 1e-6), elbow_b
        rest = length_b - upper
    else:  # short sleeve, or a forearm one smooth warp cannot follow: straight along the upper arm
        end_dir, start, rest = up_dir, seam_b, length_b
    cuff_b = start + end_dir * rest
    g_pts += [cuff_g, cuff_g + inner_g * width_g]
    b_pts += [cuff_b, cuff_b + _perp(end_dir, sense) * width_g * scale]
    return g_pts, b_pts


def correspondences(garment_lm: np.ndarray, body: BodyFrame) -> tuple[np.ndarray, np.ndarray, Similarity]:
    """Landmark pairs for the TPS.

    Args:
        garment_lm: (9, 2) float (x, y) garment pixels, rows in garments.LANDMARK_NAMES order.
        body: the person's anchors.
    Returns:
        garment_pts (N, 2) float64 garment px, body_pts (N, 2) float64 person px, and the seam
        similarity garment -> body.
    """
    lm = np.asarray(garment_lm, dtype=np.float64)
    sim = seam_similarity(lm, body)
    scale = abs(sim.a)
    seam_r, seam_l = body.seam_r, body.seam_l
    if not _has_sleeves(lm):
        # straps of a sleeveless garment sit inside the shoulder tips: keep the garment's inset
        # across the body (scaled by the torso fit), the body's height
        torso = torso_similarity(lm, body)
        on_body = torso.apply(lm[[SEAM_R, SEAM_L]])
        seam_r = seam_r + body.across * float(np.dot(on_body[0] - seam_r, body.across))
        seam_l = seam_l + body.across * float(np.dot(on_body[1] - seam_l, body.across))
        sim = Similarity(torso.a, torso.b)
    g_pts = [lm[SEAM_R], lm[SEAM_L], lm[COLLAR], lm[ARMPIT_R], lm[ARMPIT_L], lm[HEM_R], lm[HEM_L]]
    collar_b = sim.apply(lm[COLLAR][None])[0]
    b_pts = [seam_r, seam_l, collar_b, body.armpit_r, body.armpit_l, body.hem_r, body.hem_l]
    for side in ("r", "l"):
        g, b = _sleeve_points(lm, body, side, scale)
        g_pts += g
        b_pts += b
    return (*separated(np.array(g_pts), np.array(b_pts), sim, MIN_SEPARATION * body.scale), sim)


def separated(g_pts: np.ndarray, b_pts: np.ndarray, sim: Similarity, min_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep pairs in order, dropping one whose body or aligned-garment point is within min_px of a kept one."""
    aligned = sim.apply(g_pts)
    keep: list[int] = []
    for i in range(len(b_pts)):
        if all(np.hypot(*(b_pts[i] - b_pts[j])) >= min_px and np.hypot(*(aligned[i] - aligned[j])) >= min_px
               for j in keep):
            keep.append(i)
    return g_pts[keep], b_pts[keep]


@contextmanager
def single_torch_thread() -> Iterator[None]:
    """Run the (tiny) torch work on one thread, then restore the count.

    Measured on the 2-core box with other work running: the TPS fit + coarse-grid evaluation
    took 1.4 ms median on one thread and ~100 ms median on two (OpenMP wake-up and spin on a
    busy machine for a 15x15 solve and 1-2k points). Not for concurrent torch users in the same
    process: the service runs one engine worker.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def fit_tps(src: torch.Tensor, dst: torch.Tensor, reg: float = TPS_REGULARIZATION) -> tuple[torch.Tensor, torch.Tensor]:
    """Thin-plate spline through (src -> dst), in kornia's weight layout.

    Args:
        src, dst: (1, N, 2) float (x, y), same normalized frame (about [-1, 1]); N >= 3.
        reg: Tikhonov weight added to the kernel diagonal (0 = exact interpolation).
    Returns:
        kernel_weights (1, N, 2) and affine_weights (1, 3, 2) (rows: constant, x, y) for
        `kornia.geometry.transform.warp_points_tps(points, kernel_centers=src, ...)`.
    """
    s = src[0].double()
    d2 = ((s[:, None, :] - s[None, :, :]) ** 2).sum(-1)
    k = torch.where(d2 > 0, 0.5 * d2 * torch.log(torch.where(d2 > 0, d2, torch.ones_like(d2))),
                    torch.zeros_like(d2))
    n = s.shape[0]
    k = k + reg * torch.eye(n, dtype=k.dtype)
    p = torch.cat([torch.ones(n, 1, dtype=k.dtype), s], dim=1)
    top = torch.cat([k, p], dim=1)
    bottom = torch.cat([p.T, torch.zeros(3, 3, dtype=k.dtype)], dim=1)
    rhs = torch.cat([dst[0].double(), torch.zeros(3, 2, dtype=k.dtype)], dim=0)
    w = torch.linalg.solve(torch.cat([top, bottom], dim=0), rhs)
    return w[:n][None].to(src.dtype), w[n:][None].to(src.dtype)


def garment_sampling_maps(garment_pts: np.ndarray, body_pts: np.ndarray, sim: Similarity,
                          roi: tuple[int, int, int, int], garment_lm: np.ndarray | None
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each person pixel of `roi`, the garment pixel to read.

    Args:
        garment_pts, body_pts: (N, 2) (x, y) pixel pairs from `correspondences`.
        sim: the seam similarity garment -> body.
        roi: (x0, y0, x1, y1) person pixels, x1/y1 exclusive.
        garment_lm: (9, 2) a top's garment landmarks (for the sleeve split), or None: no sleeves (a bottom).
    Returns:
        map_x, map_y: (y1 - y0, x1 - x0) float32 garment pixel coordinates (for cv2.remap);
        sleeve: (y1 - y0, x1 - x0) float32 [0, 1], 1 where the garment point read is in a sleeve
            (its signed distances are linear in garment coordinates, so they are computed on the
            coarse grid and upsampled with the maps: the same values, at a fraction of the cost).
    """
    x0, y0, x1, y1 = roi
    w, h = x1 - x0, y1 - y0
    norm = float(max(w, h)) / 2.0
    centre = np.array([x0 + w / 2.0, y0 + h / 2.0])
    aligned = sim.apply(garment_pts)  # garment points in body pixels
    src = torch.from_numpy((body_pts - centre) / norm).float()[None]
    dst = torch.from_numpy((aligned - centre) / norm).float()[None]
    with single_torch_thread():
        kernel_w, affine_w = fit_tps(src, dst)

    # coarse samples at the centres of GRID_STEP_PX cells (cv2.resize's half-pixel convention),
    # one extra cell on every side so the upsampling interpolates everywhere instead of clamping
    step = GRID_STEP_PX
    nx, ny = -(-w // step) + 2, -(-h // step) + 2
    xs = x0 + (np.arange(nx) - 1 + 0.5) * step - 0.5
    ys = y0 + (np.arange(ny) - 1 + 0.5) * step - 0.5
    gx, gy = np.meshgrid(xs, ys)
    coarse = np.stack([gx.ravel(), gy.ravel()], axis=1)
    pts = torch.from_numpy((coarse - centre) / norm).float()[None]
    with torch.no_grad(), single_torch_thread():
        warped = warp_points_tps(pts, src, kernel_w, affine_w)[0].double().numpy() * norm + centre
    in_garment = sim.inverse().apply(warped)  # body px -> garment px
    if garment_lm is None:
        coarse2 = in_garment.astype(np.float32).reshape(ny, nx, 2)
        maps2 = cv2.resize(coarse2, (nx * step, ny * step), interpolation=cv2.INTER_LINEAR)
        maps2 = maps2[step:step + h, step:step + w]
        return (np.ascontiguousarray(maps2[..., 0]), np.ascontiguousarray(maps2[..., 1]),
                np.zeros((h, w), np.float32))
    coarse4 = np.concatenate([in_garment, sleeve_distances(in_garment, garment_lm)], axis=1).astype(np.float32)
    maps = cv2.resize(coarse4.reshape(ny, nx, 4), (nx * step, ny * step), interpolation=cv2.INTER_LINEAR)
    maps = maps[step:step + h, step:step + w]
    sleeve = np.clip(np.maximum(maps[..., 2], maps[..., 3]) / SLEEVE_EDGE_SOFT_PX + 0.5, 0.0, 1.0)
    return np.ascontiguousarray(maps[..., 0]), np.ascontiguousarray(maps[..., 1]), sleeve


def sleeve_distances(points: np.ndarray, garment_lm: np.ndarray) -> np.ndarray:
    """(N, 2) garment px -> (N, 2) signed distances (px) beyond each sleeve's seam -> armpit line.

    Positive on the sleeve side (away from the torso), for the right and the left sleeve.
    """
    lm = np.asarray(garment_lm, dtype=np.float64)
    centre = (lm[COLLAR] + lm[HEM_R] + lm[HEM_L]) / 3.0
    out = np.empty((len(points), 2))
    for k, (seam_i, pit_i) in enumerate(((SEAM_R, ARMPIT_R), (SEAM_L, ARMPIT_L))):
        a, b = lm[seam_i], lm[pit_i]
        d = b - a
        n = np.array([d[1], -d[0]]) / max(float(np.hypot(*d)), 1e-6)
        if float(np.dot(centre - a, n)) > 0:  # make n point away from the torso
            n = -n
        out[:, k] = (points - a) @ n
    return out


def remap_garment(garment_rgba: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """Bilinear sample of a (h, w, 4) uint8 premultiplied RGBA garment; outside = transparent."""
    return cv2.remap(garment_rgba, map_x, map_y, interpolation=cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
