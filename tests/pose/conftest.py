"""Fixtures of the pose tests: the mediapipe oracle (tests/data/pose_oracle.json) and its four photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

ORACLE_PATH = Path(__file__).resolve().parent.parent / "data" / "pose_oracle.json"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def oracle() -> dict:
    """mediapipe 0.10.21 solutions.pose / face_detection / selfie_segmentation answers (scripts/make_pose_oracle.py)."""
    with open(ORACLE_PATH, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def oracle_images(astronaut: np.ndarray, camera_rgb: np.ndarray) -> dict[str, np.ndarray]:
    """The oracle's photos: astronaut, camera (grey as RGB) and a horizontally flipped copy of each."""
    out = {"astronaut": astronaut, "camera": camera_rgb}
    for name in list(out):
        out[name + "_flipped"] = np.ascontiguousarray(out[name][:, ::-1])
    return out
