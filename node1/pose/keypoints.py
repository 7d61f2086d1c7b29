"""BlazePose 33 -> OpenPose BODY_25 / COCO-18 and OpenPose JSON (the skeleton picture VITON-HD reads is
drawn on node 2 from the keypoints: viton.skeleton).

A keypoint is kept when its visibility is at least ``VISIBILITY_THRESHOLD`` and it lies inside the
image; otherwise it is written as ``0, 0, 0`` (OpenPose's "missing"). Neck = mid-shoulders and
MidHip = mid-hips, present only when both parents are (confidence = the smaller of the two).
"""

from __future__ import annotations

import json
from typing import Any

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
