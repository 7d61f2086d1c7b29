"""BlazePose -> OpenPose conversions, JSON layout and the skeleton rendering."""

from __future__ import annotations

import json

import numpy as np

from node1.pose import BODY25_NAMES, COCO18_NAMES, openpose_json, to_body25, to_coco18
from viton.skeleton import BODY25_COLORS, render_skeleton


def _landmarks(vis: float = 0.9) -> np.ndarray:
    """33 landmarks at distinct in-frame positions: landmark k at (10 + 5k, 20 + 3k)."""
    k = np.arange(33, dtype=np.float32)
    return np.stack([10 + 5 * k, 20 + 3 * k, np.zeros(33), np.full(33, vis)], axis=1).astype(np.float32)


def test_body25_mapping_and_midpoints() -> None:
    lm = _landmarks()
    b = to_body25(lm, (400, 400))
    named = dict(zip(BODY25_NAMES, b, strict=True))
    np.testing.assert_allclose(named["Nose"][:2], lm[0, :2])
    np.testing.assert_allclose(named["RShoulder"][:2], lm[12, :2])
    np.testing.assert_allclose(named["LWrist"][:2], lm[15, :2])
    np.testing.assert_allclose(named["Neck"][:2], (lm[11, :2] + lm[12, :2]) / 2)
    np.testing.assert_allclose(named["MidHip"][:2], (lm[23, :2] + lm[24, :2]) / 2)
    np.testing.assert_allclose(named["RBigToe"][:2], lm[32, :2])
    assert named["LSmallToe"].tolist() == [0, 0, 0]  # BlazePose has no small toes
    assert named["REye"][2] == np.float32(0.9)


def test_invisible_or_out_of_frame_points_are_missing() -> None:
    lm = _landmarks()
    lm[12, 3] = 0.2  # right shoulder not visible -> RShoulder and Neck missing
    lm[0, :2] = (-5, 10)  # nose out of frame
    b = to_body25(lm, (400, 400))
    for name in ("RShoulder", "Neck", "Nose"):
        assert b[BODY25_NAMES.index(name)].tolist() == [0, 0, 0], name
    assert b[BODY25_NAMES.index("LShoulder")][2] > 0


def test_coco18_takes_the_body25_points() -> None:
    b = to_body25(_landmarks(), (400, 400))
    c = to_coco18(b)
    assert c.shape == (18, 3)
    for k, name in enumerate(COCO18_NAMES):
        np.testing.assert_array_equal(c[k], b[BODY25_NAMES.index(name)])


def test_openpose_json_layout() -> None:
    b = to_body25(_landmarks(), (400, 400))
    doc = json.loads(json.dumps(openpose_json(b)))
    flat = doc["people"][0]["pose_keypoints_2d"]
    assert len(flat) == 75
    assert flat[:3] == [round(float(v), 3) for v in b[0]]
    assert openpose_json(None)["people"] == []


def test_render_uses_openpose_colours_on_black() -> None:
    b = np.zeros((25, 3), np.float32)
    b[1] = (100, 50, 1)  # Neck
    b[8] = (100, 250, 1)  # MidHip
    img = render_skeleton(b, (300, 200))
    assert img.shape == (300, 200, 3) and img.dtype == np.uint8
    assert tuple(img[150, 100]) == BODY25_COLORS[8]  # the limb 1-8 takes its second point's colour
    assert img[10, 10].tolist() == [0, 0, 0]
    assert render_skeleton(np.zeros((25, 3), np.float32), (64, 64)).max() == 0
