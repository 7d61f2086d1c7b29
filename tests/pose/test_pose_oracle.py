"""Accuracy against mediapipe's own legacy solutions (the oracle, computed once in a separate venv).

Issue 4: every landmark with visibility > 0.5 in both within 1.5% of the image diagonal; left/right not
swapped. We also check the masks and the face detector against the same oracle.
"""

from __future__ import annotations

import numpy as np
import pytest

from node1.pose import BLAZEPOSE_NAMES, detect_faces, estimate_pose, segment_person

IMAGES = ["astronaut", "astronaut_flipped", "camera", "camera_flipped"]
DIAG_FRACTION = 0.015
MASK_GRID = 32


def _grid_mean(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    return mask.astype(np.float64).reshape(MASK_GRID, h // MASK_GRID, MASK_GRID, w // MASK_GRID).mean(axis=(1, 3)) / 255


@pytest.fixture(scope="module")
def results(oracle_images: dict[str, np.ndarray]) -> dict:
    return {name: estimate_pose(oracle_images[name]) for name in IMAGES}


@pytest.mark.parametrize("name", IMAGES)
def test_landmarks_match_mediapipe(name: str, results: dict, oracle: dict, oracle_images: dict) -> None:
    ref = np.asarray(oracle["images"][name]["landmarks"])
    ours = results[name].landmarks
    h, w = oracle_images[name].shape[:2]
    both = (ref[:, 3] > 0.5) & (ours[:, 3] > 0.5)
    assert both.sum() >= 10, f"{name}: only {both.sum()} landmarks visible in both"
    err = np.hypot(*(ours[both, :2] - ref[both, :2]).T)
    worst = int(np.argmax(err))
    limit = DIAG_FRACTION * np.hypot(h, w)
    assert err.max() <= limit, f"{name}: {BLAZEPOSE_NAMES[np.flatnonzero(both)[worst]]} off by {err.max():.2f} px"
    # what we actually reach with the exact OpenCV sampling + float32 ROI (documented in docs/pose.md)
    assert np.median(err) < 0.5
    np.testing.assert_allclose(ours[:, 3], ref[:, 3], atol=0.02)


@pytest.mark.parametrize("name", IMAGES)
def test_left_and_right_are_not_swapped(name: str, results: dict, oracle: dict) -> None:
    ref = np.asarray(oracle["images"][name]["landmarks"])
    ours = results[name].landmarks
    for left, right in [(11, 12), (13, 14), (7, 8), (2, 5)]:  # shoulders, elbows, ears, eyes
        if min(ref[left, 3], ref[right, 3], ours[left, 3], ours[right, 3]) < 0.5:
            continue
        same = np.hypot(*(ours[left, :2] - ref[left, :2]))
        swapped = np.hypot(*(ours[left, :2] - ref[right, :2]))
        assert same < swapped, f"{name}: {BLAZEPOSE_NAMES[left]} looks swapped"


@pytest.mark.parametrize("name", IMAGES)
def test_person_mask_matches_mediapipe(name: str, results: dict, oracle: dict) -> None:
    ours = _grid_mean(results[name].mask)
    ref = np.asarray(oracle["images"][name]["mask32"])
    assert np.abs(ours - ref).max() < 0.03
    assert ours.mean() > 0.1  # there is a person in it


@pytest.mark.parametrize("name", IMAGES)
def test_faces_match_mediapipe(name: str, oracle_images: dict, oracle: dict) -> None:
    ours = detect_faces(oracle_images[name])
    ref = oracle["images"][name]["faces"]
    assert len(ours) == len(ref) == 1
    assert abs(ours[0].score - ref[0]["score"]) < 1e-3
    np.testing.assert_allclose(ours[0].box_xywh, ref[0]["box_xywh"], atol=0.5)
    np.testing.assert_allclose(ours[0].keypoints, ref[0]["keypoints"], atol=0.5)


@pytest.mark.parametrize("name", ["astronaut", "camera_flipped"])
def test_selfie_mask_matches_mediapipe(name: str, oracle_images: dict, oracle: dict) -> None:
    ours = _grid_mean(segment_person(oracle_images[name]))
    assert np.abs(ours - np.asarray(oracle["images"][name]["selfie_mask32"])).max() < 0.01
