"""BlazePose 33 -> OpenPose BODY_25 / COCO-18, OpenPose JSON, and the skeleton rendering VITON-HD reads.

A keypoint is kept when its visibility is at least ``VISIBILITY_THRESHOLD`` and it lies inside the
image; otherwise it is written as ``0, 0, 0`` (OpenPose's "missing"). Neck = mid-shoulders and
MidHip = mid-hips, present only when both parents are (confidence = the smaller of the two).
"""

from __future__ import annotations

import json
from typing import Any

import cv2
import numpy as np

VISIBILITY_THRESHOLD = 0.5

BLAZEPOSE_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
BODY25_NAMES = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip", "RHip", "RKnee",
    "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar", "LBigToe", "LSmallToe", "LHeel",
    "RBigToe", "RSmallToe", "RHeel",
)
# BODY_25 index -> BlazePose index, or a pair to average, or None (BlazePose has no small toes)
BODY25_FROM_BLAZEPOSE: tuple[int | tuple[int, int] | None, ...] = (
    0, (11, 12), 12, 14, 16, 11, 13, 15, (23, 24), 24, 26, 28, 23, 25, 27, 5, 2, 8, 7, 31, None, 29, 32, None, 30,
)
COCO18_NAMES = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "RHip", "RKnee", "RAnkle",
    "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
)
COCO18_FROM_BODY25 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)

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


def to_body25(landmarks: np.ndarray, image_wh: tuple[int, int]) -> np.ndarray:
    """BlazePose landmarks (33, >=4) [x px, y px, z, visibility, ...] -> (25, 3) float32 [x, y, c]."""
    w, h = image_wh
    x, y, vis = landmarks[:, 0], landmarks[:, 1], landmarks[:, 3]
    ok = (vis >= VISIBILITY_THRESHOLD) & (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    out = np.zeros((25, 3), dtype=np.float32)
    for k, src in enumerate(BODY25_FROM_BLAZEPOSE):
        if src is None:
            continue
        idx = src if isinstance(src, tuple) else (src,)
        if all(ok[i] for i in idx):
            out[k] = (x[list(idx)].mean(), y[list(idx)].mean(), min(vis[i] for i in idx))
    return out


def to_coco18(body25: np.ndarray) -> np.ndarray:
    """(25, 3) BODY_25 -> (18, 3) COCO-18 (same points, OpenPose's COCO order)."""
    return body25[list(COCO18_FROM_BODY25)].copy()


def openpose_json(keypoints: np.ndarray | None, key: str = "pose_keypoints_2d") -> dict[str, Any]:
    """OpenPose layout ``{"version": 1.3, "people": [{key: [x, y, c, ...]}]}``; no person -> empty list."""
    people = [] if keypoints is None else [{"person_id": [-1], key: [round(float(v), 3) for v in keypoints.ravel()]}]
    return {"version": 1.3, "people": people}


def write_openpose_json(path: str, keypoints: np.ndarray | None) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(openpose_json(keypoints), f)


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
