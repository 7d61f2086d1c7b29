"""Dressing the lower body: a bottom (trousers, shorts, skirt) or a dress, by the same TPS warp and
light-preserving composite as a top, with the lower body's layers and protected regions.

Layers (CIHP-20 labels) and protected regions:
    bottom   changes old lower clothes (9 pants, 12 skirt, 6 dress), legs (16, 17), socks (8), bare
             torso skin (10) and the background, all only below the waistband line; kept in front:
             upper clothes (5 coat 7) hanging over the waistband; never written (bit for bit):
             everything above the waistband line, arms and hands (3, 14, 15), shoes (18, 19)
    dress    as a top above its natural waist (the bodice stays on the silhouette, arms in front of
             it, behind its sleeves), and below it as a skirt over the old lower clothes, legs and
             background; never written: the head zone (viton.geometric.protect), hands (the arm
             labels around the wrists, and gloves), shoes, everything beyond the dress's hem line
Nothing is painted: where the garment does not cover the old clothes they stay (shorts over long
trousers leave the trousers' lower legs). Shading comes from the old clothes under the garment.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch

from viton.engine import GarmentData, PersonData
from viton.geometric import protect, regions, shading
from viton.geometric.body import body_frame
from viton.geometric.legs import LegFrame, leg_frame
from viton.geometric.lower_points import LowerPlan, bottom_points, dress_points

BOTTOM_CHANGES = (0, 6, 8, 9, 10, 12, 16, 17)
BOTTOM_KEPT = (5, 7, 11)                  # over the waistband, drawn in front of the bottom
DRESS_CHANGES = (0, 3, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17)
HEAD_KEPT = (1, 2, 4, 13)
ARM_LABELS = (3, 14, 15)
SHOE_LABELS = (18, 19)
LOWER_CLOTHES = (6, 9, 12)
DRESS_CLOTHES = (5, 6, 7, 9, 12)           # the old clothes a dress takes its light from
HAND_RADIUS = 0.6                          # x hip width: around a wrist keypoint, the arm labels are a hand
R_WRIST, L_WRIST = 4, 7
WAIST_RAMP = 0.08                          # x hip width: the garment fades in over this much below the waistband
BOX_PAD = 0.8                              # x hip width: the work box around the garment's landmarks
BODICE_RAMP = 0.3                          # x hip width: a dress's silhouette clip fades out below the waist
SKIRT_REACH = 1.0                          # x hip width: how far from the person a skirt's flare may cover background
REACH_RAMP = 0.1                           # x hip width: ... fading out over this much


def lut(labels: tuple[int, ...]) -> np.ndarray:
    out = np.zeros(256, np.uint8)
    out[list(labels)] = 1
    return out


def line_distance(corners: np.ndarray, box: tuple[int, int, int, int], away_from: np.ndarray) -> np.ndarray:
    """(h, w) float32: signed distance (px) of each pixel of `box` from the line through the (2, 2)
    corners, positive on the side away from the point `away_from`."""
    x0, y0, x1, y1 = box
    d = corners[1] - corners[0]
    n = np.array([d[1], -d[0]]) / max(float(np.hypot(*d)), 1e-6)
    if float(np.dot(away_from - corners[0], n)) > 0:
        n = -n
    c = -float(np.dot(n, corners[0]))
    xs = np.arange(x0, x1, dtype=np.float32) * np.float32(n[0])
    ys = np.arange(y0, y1, dtype=np.float32) * np.float32(n[1]) + np.float32(c)
    return ys[:, None] + xs[None, :]


def work_box(plan: LowerPlan, pad: float, shape: tuple[int, int],
             extra: tuple[int, int, int, int] | None = None) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) around the plan's body points grown by `pad` px (and `extra`), clipped; None if empty."""
    pts = np.concatenate([plan.body_pts, plan.waist_line])
    x0, y0 = np.floor(pts.min(axis=0) - pad)
    x1, y1 = np.ceil(pts.max(axis=0) + pad)
    if extra is not None:
        x0, y0, x1, y1 = min(x0, extra[0]), min(y0, extra[1]), max(x1, extra[2]), max(y1, extra[3])
    h, w = shape
    box = (max(int(x0), 0), max(int(y0), 0), min(int(x1), w), min(int(y1), h))
    return box if box[2] > box[0] and box[3] > box[1] else None


def hand_mask(parse_crop: np.ndarray, keypoints: np.ndarray, box: tuple[int, int, int, int],
              radius: float) -> np.ndarray:
    """(h, w) uint8 {0, 1}: gloves, and the arm labels within `radius` px of a wrist keypoint."""
    x0, y0 = box[0], box[1]
    near = np.zeros(parse_crop.shape, np.uint8)
    for i in (R_WRIST, L_WRIST):
        x, y, c = (float(v) for v in keypoints[i])
        if c > 0.1 and not (x == 0.0 and y == 0.0):
            cv2.circle(near, (int(round(x - x0)), int(round(y - y0))), int(round(radius)), 1, thickness=-1)
    arms = lut((14, 15))[parse_crop]
    return (lut((3,))[parse_crop] | (arms & near)).astype(np.uint8)


def fade_from(hard: np.ndarray, soft_px: float) -> np.ndarray:
    """(h, w) float32 [0, 1]: 0 on `hard` (bool), rising to 1 within about 2.5 soft_px outside it."""
    grow = int(np.ceil(2.5 * soft_px)) + 1
    grown = cv2.dilate(hard.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_RECT, (2 * grow + 1,) * 2))
    keep = 1.0 - cv2.GaussianBlur(grown.astype(np.float32), (0, 0), sigmaX=soft_px, sigmaY=soft_px)
    keep[hard] = 0.0
    return keep.astype(np.float32)


Layers = tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...], np.ndarray]


def _bottom_layers(parse: np.ndarray, below_waist: np.ndarray, kind: str, legs: LegFrame,
                   sigma: float) -> Layers:
    """(allowed uint8, hard bool, keep float32, kept labels, bodice float32) of a bottom in the box."""
    allowed = lut(BOTTOM_CHANGES)[parse] & (below_waist > 0)
    hard = (below_waist <= 0) | lut(ARM_LABELS)[parse].astype(bool) | lut(SHOE_LABELS)[parse].astype(bool)
    ramp = max(WAIST_RAMP * legs.hip_w, 1.5)
    keep = fade_from(hard, sigma) * np.clip(below_waist / np.float32(ramp), 0.0, 1.0)
    # trousers stay on the silhouette (a flat-lay leg is wider than a leg seen from the front, and a leg
    # the pose did not see is a guess); a skirt's flare may reach into the background beside the legs
    bodice = np.full(parse.shape, 0.0 if kind == "skirt" else 1.0, np.float32)
    return allowed, hard, keep, BOTTOM_KEPT, bodice


def _dress_layers(person: PersonData, plan: LowerPlan, legs: LegFrame, *, box: tuple[int, int, int, int],
                  below_waist: np.ndarray, sigma: float) -> Layers:
    """(allowed uint8, hard bool, keep float32, kept labels, bodice float32) of a dress in the box."""
    x0, y0, x1, y1 = box
    parse = person.parse[y0:y1, x0:x1]
    if plan.body is None:
        raise ValueError("a dress plan carries its body frame")
    allowed = regions.changeable_region(person.parse)[y0:y1, x0:x1] | lut(DRESS_CHANGES)[parse] & (below_waist > 0)
    head = protect.head_zone(person.parse, person.keypoints, plan.body)
    head_hard, head_keep = protect.protected_masks(parse, head, plan.body, box, sigma)   # head + below the hem
    ends = hand_mask(parse, person.keypoints, box, HAND_RADIUS * legs.hip_w).astype(bool)
    ends |= lut(SHOE_LABELS)[parse].astype(bool)
    keep = head_keep * fade_from(ends, sigma)
    bodice = np.clip(1.0 - below_waist / np.float32(BODICE_RAMP * legs.hip_w), 0.0, 1.0)
    return allowed, head_hard | ends, keep, HEAD_KEPT, bodice


def lower_masks(person: PersonData, garment: GarmentData, plan: LowerPlan, legs: LegFrame, *,
                box: tuple[int, int, int, int], sigma: float) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """What the garment may change in `box`, the fade at the protected regions, and the soft layers.

    Returns:
        allowed: (h, w) uint8 {0, 1}; keep: (h, w) float32 [0, 1] (0 where protected);
        soft: {"kept", "arms", "background", "cloth", "bodice"}: (h, w) float32 [0, 1].
    """
    x0, y0, x1, y1 = box
    parse = person.parse[y0:y1, x0:x1]
    below_waist = line_distance(plan.waist_line, box, away_from=legs.hip_mid - legs.down * 4.0 * legs.hip_w)
    if garment.category == "bottom":
        layers = _bottom_layers(parse, below_waist, garment.kind, legs, sigma)
    else:
        layers = _dress_layers(person, plan, legs, box=box, below_waist=below_waist, sigma=sigma)
    allowed, hard, keep, kept_labels, bodice = layers
    # the background: a margin around the person, or a skirt's reach; beyond it nothing is drawn
    background = parse == 0
    reach = SKIRT_REACH * legs.hip_w if float(bodice.min()) < 1.0 else float(regions.margin_px(person.parse.shape))
    fade = max(REACH_RAMP * legs.hip_w, 1.0)
    far = cv2.distanceTransform(background.astype(np.uint8), cv2.DIST_L2, 3)   # px to the person
    allowed = (allowed & ~(background & (far > reach + fade))).astype(np.uint8)
    keep = keep * np.where(background, np.clip((reach + fade - far) / np.float32(fade), 0.0, 1.0), 1.0)
    allowed[hard] = 0
    keep[hard] = 0.0
    stack = np.empty((*parse.shape, 4), np.uint8)
    cloth = LOWER_CLOTHES if garment.category == "bottom" else DRESS_CLOTHES
    for i, labels in enumerate((kept_labels, ARM_LABELS, cloth)):
        stack[..., i] = lut(labels)[parse] * np.uint8(255)
    stack[..., 3] = background * np.uint8(255)
    blurred = cv2.GaussianBlur(stack, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)
    s = blurred.astype(np.float32) * np.float32(1.0 / 255.0)
    soft = {"kept": s[..., 0], "arms": s[..., 1], "cloth": s[..., 2], "background": s[..., 3], "bodice": bodice}
    return allowed, keep.astype(np.float32), soft


def composite_lower(crop: np.ndarray, sampled: np.ndarray, *, sleeve: np.ndarray, allowed: np.ndarray,
                    keep: np.ndarray, soft: dict[str, np.ndarray], shade: np.ndarray | None,
                    arms_in_front: bool, detached: Callable[[np.ndarray], np.ndarray | None] | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The shaded garment over the photo in the box: out = photo * (1 - alpha) + colour * shade * alpha.

    Args:
        crop: (h, w, 3) uint8 RGB photo; sampled: (h, w, 4) uint8 premultiplied RGBA warped garment;
        sleeve: (h, w) float32 [0, 1], 1 in a dress's sleeves; allowed: (h, w) uint8 {0, 1};
        keep: (h, w) float32 [0, 1]; soft: `lower_masks`'s layers; shade: (h, w) float32 or None;
        arms_in_front: arms always in front (a bottom), else in front of the body, behind the sleeves;
        detached: (h, w) alpha -> (h, w) bool of the garment's pieces cut off from its main body (dropped:
            a speck of trousers where the parse map put a patch of pants inside a coat), or None.
    Returns:
        out: (h, w, 3) float32 in [0, 255]; alpha: (h, w) float32 [0, 1].
    """
    t = torch.from_numpy
    with torch.inference_mode():
        layer = t(allowed).float()
        layer *= t(keep)
        layer *= 1.0 - t(soft["kept"])
        layer *= 1.0 - t(soft["arms"]) * (1.0 if arms_in_front else (1.0 - t(sleeve)))
        layer *= 1.0 - t(soft["background"]) * t(soft["bodice"])   # a dress's bodice stays on the silhouette
        alpha = t(np.ascontiguousarray(sampled[..., 3])).float()
        alpha *= layer
        alpha *= 1.0 / 255.0
        cut = detached(alpha.numpy()) if detached is not None else None
        if cut is not None:
            layer[t(cut)] = 0.0
            alpha[t(cut)] = 0.0
        weight = layer
        if shade is not None:   # the old lower clothes' light, only where they were
            weight = layer * (1.0 + t(soft["cloth"]) * (t(shade) - 1.0))
        out_t = t(crop if crop.flags.writeable else crop.copy()).float()
        out_t *= (1.0 - alpha)[..., None]
        cloth = t(np.ascontiguousarray(sampled[..., :3])).float()
        cloth *= weight[..., None]
        out_t += cloth
        alpha.clamp_(0.0, 1.0)
        return out_t.numpy(), alpha.numpy()


def plan_lower(person: PersonData, garment: GarmentData) -> tuple[LowerPlan, LegFrame]:
    """The landmark pairs of a bottom or a dress on this person.

    Raises:
        LegsNotInView: no hips or no knee in the photo. PoseIncomplete: a dress without both shoulders.
    """
    legs = leg_frame(person.keypoints, person.parse.shape)
    if garment.category == "dress":
        return dress_points(garment.landmarks, body_frame(person.keypoints), legs), legs
    return bottom_points(garment.landmarks, legs, garment.kind), legs


def shade_lower(crop: np.ndarray, parse_crop: np.ndarray, legs: LegFrame, category: str) -> np.ndarray | None:
    """The old clothes' shading in the box (viton.geometric.shading; a bottom's from the old lower
    clothes, a dress's from the upper ones too), or None."""
    cloth = LOWER_CLOTHES if category == "bottom" else DRESS_CLOTHES
    return shading.shading_field(crop, lut(cloth)[parse_crop], 2.0 * legs.hip_w)
