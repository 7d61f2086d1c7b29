"""The OpenPose BODY_25 skeleton picture VITON-HD reads, drawn from keypoints (on node 2, by the engine
that needs it, so the picture never crosses the network: 300 bytes of keypoints do)."""

from __future__ import annotations

import cv2
import numpy as np

# OpenPose's BODY_25 render pairs and per-keypoint colours (RGB); a limb takes its second keypoint's colour.
BODY25_PAIRS = (
    (1, 8), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11), (8, 12), (12, 13),
    (13, 14), (1, 0), (0, 15), (15, 17), (0, 16), (16, 18), (14, 19), (19, 20), (14, 21), (11, 22), (22, 23),
    (11, 24),
)
BODY25_COLORS = (
    (255, 0, 85), (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (255, 0, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (255, 0, 170), (170, 0, 255), (255, 0, 255), (85, 0, 255), (0, 0, 255), (0, 0, 255),
    (0, 0, 255), (0, 255, 255), (0, 255, 255), (0, 255, 255),
)



def render_skeleton(body25: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """OpenPose-style skeleton on black: (H, W, 3) uint8 RGB. Missing points (c == 0) are not drawn.

    Sizes follow OpenPose's renderer: circle thickness ~ sqrt(H W) / 75 (radius half of it), limbs 3/4 of it.
    """
    h, w = image_hw
    canvas = np.zeros((h, w, 3), dtype=np.uint8)
    circle = max(int(round(np.sqrt(h * w) / 75)), 2)
    line = max(int(round(circle * 0.75)), 2)
    radius = max(circle // 2, 1)
    present = body25[:, 2] > 0
    for a, b in BODY25_PAIRS:
        if present[a] and present[b]:
            pa = (int(round(body25[a, 0])), int(round(body25[a, 1])))
            pb = (int(round(body25[b, 0])), int(round(body25[b, 1])))
            cv2.line(canvas, pa, pb, BODY25_COLORS[b], line, lineType=cv2.LINE_AA)
    for k in np.flatnonzero(present):
        centre = (int(round(body25[k, 0])), int(round(body25[k, 1])))
        cv2.circle(canvas, centre, radius, BODY25_COLORS[k], circle, lineType=cv2.LINE_AA)
    return canvas
