"""Real photos (skimage astronaut, camera, their flips) through the real pose pipeline and the parser.

Each photo is posed and parsed once per session; the mediapipe oracle landmarks (tests/data/pose_oracle.json,
computed by mediapipe's own solutions.pose) are the independent reference the checks measure against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from node1.parsing import ParseResult, parse_person

PHOTOS = ("astronaut", "astronaut_flipped", "camera", "camera_flipped")
ORACLE = Path(__file__).resolve().parents[1] / "data" / "pose_oracle.json"


@dataclass
class Case:
    name: str
    image: np.ndarray          # (H, W, 3) uint8
    mask: np.ndarray           # (H, W) uint8, 255 = person (our pose model's segmentation)
    landmarks: np.ndarray      # (33, 4) ours
    oracle: np.ndarray         # (33, 4) mediapipe's [x, y, z, visibility]
    result: ParseResult

    @property
    def parts_full(self) -> np.ndarray:
        """(H, W) uint8 part map brought to the photo's resolution (nearest)."""
        h, w = self.parse.shape
        s = -(-h // self.result.parts.shape[0])
        return np.repeat(np.repeat(self.result.parts, s, axis=0), s, axis=1)[:h, :w]

    @property
    def parse(self) -> np.ndarray:
        return self.result.parse


def photo(name: str) -> np.ndarray:
    from skimage import data

    base = data.astronaut() if name.startswith("astronaut") else np.stack([data.camera()] * 3, axis=-1)
    return np.ascontiguousarray(base[:, ::-1] if name.endswith("_flipped") else base)


@pytest.fixture(scope="session")
def cases() -> dict[str, Case]:
    from node1.pose import estimate_pose

    torch.set_num_threads(2)
    oracle = json.loads(ORACLE.read_text())["images"]
    out = {}
    for name in PHOTOS:
        img = photo(name)
        pose = estimate_pose(img, "cpu")
        res = parse_person(img, pose.landmarks, pose.mask, "cpu")
        out[name] = Case(name, img, pose.mask, pose.landmarks, np.asarray(oracle[name]["landmarks"], np.float32), res)
    return out
