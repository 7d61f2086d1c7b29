"""Protected regions: pixels a try-on never writes, whatever the pose or the warp.

    head      the face detector's box (the bounding box of CIHP face, 13, in the parse map), the
              head disk around the BODY_25 head keypoints (nose, eyes, ears), hair (2), hat (1)
              and sunglasses (4): covers a profile, a turned or lowered head, arms across the face;
              for a turned face also a disk in front of it (a camera or phone held to the face)
    below     everything beyond the garment's hem line (the line through the body's hem corners,
              `BodyFrame.hem_r` / `hem_l`, pushed out by `hem_margin_px`): legs, shorts, a coat's
              tails, the floor; the garment fades out over a short ramp just above it

The engine clips the garment's warp by these regions (never the other way round): inside them
its alpha is exactly 0, so the photo's pixels come out bit for bit. Outside, a soft factor
fades the garment to 0 at their edges (no hard seam).

Convention: (x, y) pixels of the person image, origin top-left; boxes (x0, y0, x1, y1) with
x1/y1 exclusive. All masks are computed inside the engine's working box only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from viton.geometric.body import MIN_CONFIDENCE, BodyFrame

FACE_LABEL = 13
PROTECTED_LABELS = (1, 2, 3, 4)  # hat, hair, glove (a hand), sunglasses
HEAD_KEYPOINTS = (0, 15, 16, 17, 18)  # BODY_25 nose, right/left eye, right/left ear
HEAD_RADIUS = 1.0                # x the largest distance between two head keypoints
MIN_HEAD_RADIUS = 0.22           # x body scale: the head disk's smallest radius (one keypoint seen)
PROFILE_OFFSET = 0.12            # x head radius: nose this far across from the head's centre = a turned face
FRONT_OFFSET = 0.5               # x head radius: centre of the protected disk in front of a turned face
FRONT_RADIUS = 0.9               # x head radius
HEM_MARGIN = 0.0                 # x body scale: the protected side starts this far beyond the hem line
HEM_RAMP = 0.03                  # x body scale: the garment fades out over this much above it
MIN_HEM_RAMP_PX = 2.0


@dataclass(frozen=True)
class HeadZone:
    """Where the head is: the face box and the head disk, in full-image pixels.

    face_box: (x0, y0, x1, y1) of the face label, or None when the parse map has no face.
    centre: (2,) float64 (x, y) of the head disk, or None when no head keypoint was seen.
    radius: the disk's radius in pixels (0 without a centre).
    front: (2,) float64 centre of the disk in front of a turned face (a camera or a phone held to
        it, the hands around it; radius FRONT_RADIUS x radius), or None for a face seen from the front.
    """

    face_box: tuple[int, int, int, int] | None
    centre: np.ndarray | None
    radius: float
    front: np.ndarray | None = None


def face_box(parse: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) bounding box of the face label (13) of a (H, W) uint8 CIHP map, or None."""
    face = (parse == FACE_LABEL).astype(np.uint8)
    x, y, w, h = cv2.boundingRect(face)
    return None if w == 0 or h == 0 else (x, y, x + w, y + h)


def head_zone(parse: np.ndarray, keypoints: np.ndarray, body: BodyFrame) -> HeadZone:
    """The face box (from the parse map's face label) and the head disk (from BODY_25 keypoints).

    Args:
        parse: (H, W) uint8 CIHP-20 labels.
        keypoints: (25, 3) float (x, y, confidence) pixels; missing = 0, 0, 0.
        body: the person's anchors (for the body scale).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    seen = [kp[i, :2] for i in HEAD_KEYPOINTS
            if kp[i, 2] > MIN_CONFIDENCE and not (kp[i, 0] == 0.0 and kp[i, 1] == 0.0)]
    if not seen:
        return HeadZone(face_box(parse), None, 0.0)
    pts = np.array(seen)
    spread = float(np.max(np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))))
    radius = max(HEAD_RADIUS * spread, MIN_HEAD_RADIUS * body.scale)
    centre = pts.mean(axis=0)
    front = None
    nose_seen = kp[0, 2] > MIN_CONFIDENCE and not (kp[0, 0] == 0.0 and kp[0, 1] == 0.0)
    if nose_seen:
        # a face turned sideways has its nose well off the head's centre across the body (seen from
        # the front the nose sits below the eyes, on the axis): what it looks at is protected too
        sideways = float(np.dot(kp[0, :2] - centre, body.across))
        if abs(sideways) > PROFILE_OFFSET * radius:
            front = kp[0, :2] + body.across * np.sign(sideways) * FRONT_OFFSET * radius
    return HeadZone(face_box(parse), centre, radius, front)


def hem_margin_px(body: BodyFrame) -> float:
    """Distance (px) beyond the hem line where the protected side begins."""
    return HEM_MARGIN * body.scale


def hem_ramp_px(body: BodyFrame) -> float:
    """Length (px) of the garment's fade-out above the protected side of the hem."""
    return max(HEM_RAMP * body.scale, MIN_HEM_RAMP_PX)


def hem_distance(body: BodyFrame, box: tuple[int, int, int, int]) -> np.ndarray:
    """(h, w) float32: signed distance (px) of each pixel of `box` beyond the hem line.

    Positive below the hem (on the side away from the shoulders), negative above it.
    """
    x0, y0, x1, y1 = box
    a, b, c = hem_line(body)
    xs = np.arange(x0, x1, dtype=np.float32) * np.float32(a)
    ys = np.arange(y0, y1, dtype=np.float32) * np.float32(b) + np.float32(c)
    return ys[:, None] + xs[None, :]


def hem_line(body: BodyFrame) -> tuple[float, float, float]:
    """(a, b, c) with a*x + b*y + c = signed distance (px) beyond the hem line (+ = below the hem)."""
    d = body.hem_l - body.hem_r
    n = np.array([d[1], -d[0]]) / max(float(np.hypot(*d)), 1e-6)
    mid_shoulders = (body.shoulder_r + body.shoulder_l) / 2
    hem_mid = (body.hem_r + body.hem_l) / 2
    if float(np.dot(mid_shoulders - hem_mid, n)) > 0:  # n must point away from the shoulders
        n = -n
    return float(n[0]), float(n[1]), -float(np.dot(n, hem_mid))


def protected_masks(parse_crop: np.ndarray, head: HeadZone, body: BodyFrame, box: tuple[int, int, int, int],
                    soft_px: float) -> tuple[np.ndarray, np.ndarray]:
    """The protected pixels of `box` and the garment's fade towards them.

    Args:
        parse_crop: (h, w) uint8 CIHP labels of the box.
        head, body: from `head_zone` and `viton.geometric.body.body_frame`.
        box: (x0, y0, x1, y1) full-image pixels of the crop.
        soft_px: Gaussian sigma (px) of the fade at the head zone's edge.
    Returns:
        hard: (h, w) bool, True where nothing may be written;
        keep: (h, w) float32 in [0, 1], the factor on the garment's alpha: 0 on `hard`, rising to 1
            within about 2 * soft_px (head) or `hem_ramp_px` (hem) outside it.
    """
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    grow = int(np.ceil(2.5 * soft_px)) + 1
    shapes = np.zeros((h, w), np.uint8)   # face box + head disk
    grown = np.zeros((h, w), np.uint8)    # ... grown by `grow`, blurred into the fade
    if head.face_box is not None:
        fx0, fy0, fx1, fy1 = head.face_box
        cv2.rectangle(shapes, (fx0 - x0, fy0 - y0), (fx1 - 1 - x0, fy1 - 1 - y0), 1, thickness=-1)
        cv2.rectangle(grown, (fx0 - x0 - grow, fy0 - y0 - grow), (fx1 - 1 - x0 + grow, fy1 - 1 - y0 + grow), 1,
                      thickness=-1)
    if head.centre is not None:
        cx, cy = (int(round(v)) for v in head.centre - np.array([x0, y0]))
        cv2.circle(shapes, (cx, cy), int(round(head.radius)), 1, thickness=-1)
        cv2.circle(grown, (cx, cy), int(round(head.radius)) + grow, 1, thickness=-1)
    if head.front is not None:
        fx, fy = (int(round(v)) for v in head.front - np.array([x0, y0]))
        r = int(round(FRONT_RADIUS * head.radius))
        cv2.circle(shapes, (fx, fy), r, 1, thickness=-1)
        cv2.circle(grown, (fx, fy), r + grow, 1, thickness=-1)
    lut = np.zeros(256, np.uint8)
    lut[list(PROTECTED_LABELS)] = 1
    labelled = lut[parse_crop]
    if labelled.any():  # hair, hands: the garment fades out before it meets them, no hard cut
        shapes |= labelled
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * grow + 1, 2 * grow + 1))
        grown = np.maximum(grown, cv2.dilate(labelled, kernel)).astype(np.uint8)
    dist = hem_distance(body, box)
    margin = hem_margin_px(body)
    hard = (shapes > 0) | (dist > margin)
    keep = np.clip((margin - dist) / np.float32(hem_ramp_px(body)), 0.0, 1.0)
    if grown.any():
        fade = cv2.GaussianBlur(grown.astype(np.float32), (0, 0), sigmaX=soft_px, sigmaY=soft_px)
        keep *= 1.0 - fade
    keep[hard] = 0.0
    return hard, keep
