"""The `geometric` try-on engine: landmark TPS warp + a light-preserving composite that only
ever draws the garment.

No learned weights, no I/O. Reads `person.image`, `person.parse` and `person.keypoints` only
(`GeometricEngine.reads`). Pipeline (stage names as in `TryOnOutput.timings_ms`):
    anchors    body anchors from BODY_25 (viton.geometric.body), the region the try-on may change,
               and the protected regions it never writes (viton.geometric.protect: face box, head
               disk, hair, everything below the garment's hem)
    warp       garment landmarks -> body anchors, TPS on a coarse grid, one remap (the prepared garment
               and the sampled warp are kept between try-ons of a garment: viton.geometric.memo)
    composite  the warped garment over the photo, under the shading of the old clothes
               (viton.geometric.shading: folds and shadows, not their colours or prints), layered
               under hair/face/lower body and under arms that cross the torso (but over the upper
               arms its sleeves cover), clipped by the protected regions, with soft edges
Nothing is painted: where the new garment does not cover the old clothes they stay as they were
(a short-sleeved tee over long sleeves leaves the sleeves below its own; a tee over a coat leaves
the coat's tails). Every output pixel is the photo's, the shaded garment's, or a mix of the two
by the garment's alpha. Pixels outside the changeable region or inside a protected one are
copied bit for bit. Deterministic: same input, same output.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import torch

from viton.checks import check_garment, check_person
from viton.engine import GarmentData, PersonData, TryOnOutput
from viton.geometric import lower, protect, regions, shading, warp
from viton.geometric.body import body_frame
from viton.geometric.memo import WarpMemo

DETACHED_MIN_SHARE = 0.15       # a garment piece smaller than this x the largest, cut off from it, is dropped
DETACHED_FRINGE_PX = 3          # ... with its anti-aliased fringe
DETACHED_GAP = 0.03             # x body scale: a smaller piece this close to the main one is in place


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)


class GeometricEngine:
    """Dresses a person in a garment by landmark TPS warping; needs no weights.

    Args:
        device: accepted for the Engine interface; the work (a small TPS solve and image
            remaps, memory-bound) runs on the CPU whatever is asked, and `device` says "cpu".
    """

    name = "geometric"
    reads: tuple[str, ...] = ("person", "parse", "keypoints")  # the person tensors try_on reads

    def __init__(self, device: str = "cpu") -> None:
        self.device = "cpu"
        self.requested_device = device
        self.memo = WarpMemo()   # the warp's work kept between try-ons of a garment (viton.geometric.memo)

    def try_on(self, person: PersonData, garment: GarmentData) -> TryOnOutput:
        """Dress `person` in `garment` (shapes/dtypes in viton.engine). Raises InvalidInput/PoseIncomplete."""
        t_all = time.perf_counter()
        check_person(person, self.reads)
        check_garment(garment)
        if garment.category != "top":
            return _try_on_lower(person, garment, t_all, self.memo)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        image, parse = person.image, person.parse
        H, W = parse.shape
        body = body_frame(person.keypoints)
        region = regions.changeable_region(parse)
        box = regions.bounding_box(region, pad=2)
        head = protect.head_zone(parse, person.keypoints, body)
        timings["anchors"] = _ms(t0)
        if box is None:  # nothing to dress: no upper body in the parse map
            timings["total"] = _ms(t_all)
            return TryOnOutput(image.copy(), np.zeros_like(image), np.zeros((H, W), np.float32), timings)
        x0, y0, x1, y1 = box

        t0 = time.perf_counter()
        g_pts0 = np.asarray(garment.landmarks, dtype=np.float64)
        sim_scale = abs(warp.seam_similarity(g_pts0, body).a)
        rgba, lm, key = self.memo.prepared(garment, sim_scale)
        g_pts, b_pts, sim = warp.correspondences(lm, body)
        sampled, sleeve = self.memo.sampled((rgba, key), g_pts, b_pts, sim, box=box, shape=(H, W), sleeve_lm=lm)
        timings["warp"] = _ms(t0)

        t0 = time.perf_counter()
        crop = image[y0:y1, x0:x1]
        parse_crop = parse[y0:y1, x0:x1]
        sigma = regions.edge_sigma(parse.shape)
        hard, keep = protect.protected_masks(parse_crop, head, body, box, sigma)
        allowed = region[y0:y1, x0:x1]
        allowed[hard] = 0
        soft = regions.soft_label_masks(parse_crop, sigma)
        shade_np = shading.shading_field(crop, regions.upper_mask(parse_crop), body.scale)
        out_crop, alpha_np = _composite(crop, sampled, sleeve=sleeve, allowed=allowed, keep=keep, soft=soft,
                                        gap_px=max(int(DETACHED_GAP * body.scale), 1), shade=shade_np)
        timings["composite"] = _ms(t0)
        return _output(image, (x0, y0, x1, y1), out_crop, sampled, alpha_np, timings=timings, t_all=t_all)


def _try_on_lower(person: PersonData, garment: GarmentData, t_all: float, memo: WarpMemo) -> TryOnOutput:
    """A bottom or a dress (viton.geometric.lower): anchors, warp, composite as for a top."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    image, parse = person.image, person.parse
    H, W = parse.shape
    plan, legs = lower.plan_lower(person, garment)
    extra = regions.bounding_box(regions.changeable_region(parse), pad=2) if garment.category == "dress" else None
    box = lower.work_box(plan, lower.BOX_PAD * legs.hip_w + plan.scale * _half_width(garment), (H, W), extra)
    timings["anchors"] = _ms(t0)
    if box is None:   # the garment lies outside the photo
        timings["total"] = _ms(t_all)
        return TryOnOutput(image.copy(), np.zeros_like(image), np.zeros((H, W), np.float32), timings)
    x0, y0, x1, y1 = box

    t0 = time.perf_counter()
    rgba, _, key = memo.prepared(garment, plan.scale)
    g_pts = np.asarray(plan.garment_pts, np.float64)
    if rgba.shape[:2] != garment.mask.shape:   # the garment was shrunk: its points and similarity with it
        fx, fy = rgba.shape[1] / garment.mask.shape[1], rgba.shape[0] / garment.mask.shape[0]
        g_pts = np.stack([(g_pts[:, 0] + 0.5) * fx - 0.5, (g_pts[:, 1] + 0.5) * fy - 0.5], axis=1)
        shrink = warp.Similarity(complex(1 / fx, 0), complex(0.5 / fx - 0.5, 0.5 / fy - 0.5))
        sim = warp.Similarity(plan.sim.a * shrink.a, plan.sim.a * shrink.b + plan.sim.b)
        sleeve_lm = None if plan.sleeve_lm is None else np.stack(
            [(plan.sleeve_lm[:, 0] + 0.5) * fx - 0.5, (plan.sleeve_lm[:, 1] + 0.5) * fy - 0.5], axis=1)
    else:
        sim, sleeve_lm = plan.sim, plan.sleeve_lm
    sampled, sleeve = memo.sampled((rgba, key), g_pts, plan.body_pts, sim, box=box, shape=(H, W),
                                   sleeve_lm=sleeve_lm)
    timings["warp"] = _ms(t0)

    t0 = time.perf_counter()
    crop = image[y0:y1, x0:x1]
    sigma = regions.edge_sigma(parse.shape)
    allowed, keep, soft = lower.lower_masks(person, garment, plan, legs, box=box, sigma=sigma)
    shade = lower.shade_lower(crop, parse[y0:y1, x0:x1], legs, garment.category)
    gap_px = max(int(DETACHED_GAP * 2.0 * legs.hip_w), 1)
    out_crop, alpha_np = lower.composite_lower(crop, sampled, sleeve=sleeve, allowed=allowed, keep=keep, soft=soft,
                                               shade=shade, arms_in_front=garment.category == "bottom",
                                               detached=lambda a: _detached_pieces(a, gap_px))
    timings["composite"] = _ms(t0)
    return _output(image, box, out_crop, sampled, alpha_np, timings=timings, t_all=t_all)


def _output(image: np.ndarray, box: tuple[int, int, int, int], out_crop: np.ndarray, sampled: np.ndarray,
            alpha: np.ndarray, *, timings: dict[str, float], t_all: float) -> TryOnOutput:
    """The try-on output from the composited work box (a top's or a lower garment's).

    image: (H, W, 3) uint8 photo; box: (x0, y0, x1, y1) the work box; out_crop: (h, w, 3) float32 the
    composite there; sampled: (h, w, 4) float32 premultiplied warped garment; alpha: (h, w) float32.
    """
    x0, y0, x1, y1 = box
    out = image.copy()
    # where alpha = 0 (outside the changeable region, inside a protected one) out_crop holds the
    # photo's integers exactly and rounds back to them: those pixels stay bit for bit (tested)
    out[y0:y1, x0:x1] = cv2.convertScaleAbs(out_crop)  # round + saturate to uint8
    warped = np.zeros_like(image)
    a_s = cv2.merge([sampled[..., 3]] * 3)
    warped[y0:y1, x0:x1] = cv2.divide(np.ascontiguousarray(sampled[..., :3]), a_s, scale=255.0)
    alpha_full = np.zeros(image.shape[:2], dtype=np.float32)
    alpha_full[y0:y1, x0:x1] = alpha
    timings["total"] = _ms(t_all)
    return TryOnOutput(image=out, warped_garment=warped, garment_alpha=alpha_full, timings_ms=timings)


def _half_width(garment: GarmentData) -> float:
    """Half the garment's widest extent in garment px (how far it may reach beside its landmarks)."""
    cols = np.flatnonzero((garment.mask >= 128).any(axis=0))
    return (float(cols[-1] - cols[0]) / 2.0) if cols.size else 0.0


def _detached_pieces(alpha: np.ndarray, gap_px: int) -> np.ndarray | None:
    """(h, w) bool: the garment's pieces cut off from its main body (with their soft fringe), or None.

    Clipping by the protected regions can cut a sleeve that follows a mis-detected arm (past a
    camera held to the face, into the sky): a piece of sleeve floating on its own is never right.
    Kept: the largest piece, any piece at least DETACHED_MIN_SHARE of its area, and any piece
    within `gap_px` of it (a sleeve parted from the torso by an arm in front of it is in place).
    Args:
        alpha: (h, w) float32 [0, 1], the garment's alpha in the box.
    """
    solid = (alpha > 0.5).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(solid, connectivity=8)
    if n <= 2:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    small = np.flatnonzero(areas < DETACHED_MIN_SHARE * areas.max()) + 1
    if small.size == 0:
        return None
    main = (labels == int(np.argmax(areas)) + 1).astype(np.uint8)
    near = np.unique(labels[cv2.dilate(main, np.ones((2 * gap_px + 1,) * 2, np.uint8)) > 0])
    small = np.setdiff1d(small, near)
    if small.size == 0:
        return None
    lut = np.zeros(n, np.uint8)
    lut[small] = 1
    fringe = cv2.dilate(lut[labels], np.ones((2 * DETACHED_FRINGE_PX + 1,) * 2, np.uint8))
    return (fringe > 0) & (labels == 0) | (lut[labels] > 0)


def _composite(crop: np.ndarray, sampled: np.ndarray, *, sleeve: np.ndarray, allowed: np.ndarray,
               keep: np.ndarray, soft: dict[str, np.ndarray], gap_px: int,
               shade: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The shaded garment over the photo in the box: out = photo * (1 - alpha) + colour * shade * alpha.

    Args:
        crop: (h, w, 3) uint8 RGB photo; sampled: (h, w, 4) uint8 premultiplied RGBA warped garment;
        sleeve: (h, w) float32 [0, 1], 1 where the garment point is in a sleeve;
        allowed: (h, w) uint8 {0, 1}, pixels the garment may change (changeable, not protected);
        keep: (h, w) float32 [0, 1], the protected regions' fade; soft: `regions.soft_label_masks`;
        gap_px: how far from the garment's main piece a small piece still counts as attached;
        shade: (h, w) float32 shading of the old clothes, or None.
    Returns:
        out: (h, w, 3) float32 in [0, 255]; alpha: (h, w) float32 [0, 1], the garment's weight.
    """
    # arms in front of the garment's body, behind its sleeves; the garment stays on the person's
    # silhouette (a flat-lay garment is wider than a body seen from the front) with an anti-aliased
    # edge that reaches a pixel or two into the background. The per-pixel arithmetic runs as torch
    # ops on zero-copy views: vectorised and on both cores (numpy's are single-threaded).
    t = torch.from_numpy
    with torch.inference_mode():
        layer = t(allowed).float()
        layer *= t(keep)
        layer *= 1.0 - t(soft["kept"])
        layer *= 1.0 - t(soft["arms"]) * (1.0 - t(sleeve))
        layer *= 1.0 - t(soft["background"])
        alpha = t(np.ascontiguousarray(sampled[..., 3])).float()
        alpha *= layer
        alpha *= 1.0 / 255.0
        detached = _detached_pieces(alpha.numpy(), gap_px)
        if detached is not None:
            layer[t(detached)] = 0.0
            alpha[t(detached)] = 0.0
        weight = layer  # premultiplied colour x layer x shade = colour x alpha x shade
        if shade is not None:  # the old clothes' light, only where they were
            weight = layer * (1.0 + t(soft["upper"]) * (t(shade) - 1.0))
        out_t = t(crop if crop.flags.writeable else crop.copy()).float()  # frames may be read-only
        out_t *= (1.0 - alpha)[..., None]
        cloth = t(np.ascontiguousarray(sampled[..., :3])).float()
        cloth *= weight[..., None]
        out_t += cloth
        alpha.clamp_(0.0, 1.0)  # float round-off of the products above
        return out_t.numpy(), alpha.numpy()
