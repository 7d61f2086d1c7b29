"""Typed errors at the boundary: no person, bad images; several people -> the largest."""

from __future__ import annotations

import numpy as np
import pytest

from node1.pose import InvalidImage, NoPersonDetected, as_rgb_uint8, estimate_pose


def test_no_person_has_a_shopper_message() -> None:
    with pytest.raises(NoPersonDetected, match="no person detected — step into the frame"):
        estimate_pose(np.zeros((300, 400, 3), np.uint8))


def test_too_small_image_names_its_size() -> None:
    with pytest.raises(InvalidImage, match=r"300x100 px.*at least 128"):
        estimate_pose(np.zeros((100, 300, 3), np.uint8))


@pytest.mark.parametrize(("image", "text"), [
    (np.zeros((200, 200, 3), np.float32), "uint8"),
    (np.zeros((200, 200, 2), np.uint8), r"\(200, 200, 2\)"),
    (np.zeros((2, 200, 200, 3), np.uint8), "shape"),
    ("photo.png", "str"),
])
def test_not_an_rgb_image(image: object, text: str) -> None:
    with pytest.raises(InvalidImage, match=text):
        as_rgb_uint8(image)


def test_grey_rgba_and_pil_are_converted(astronaut: np.ndarray) -> None:
    from PIL import Image

    grey = astronaut[:, :, 0]
    assert as_rgb_uint8(grey).shape == (512, 512, 3)
    rgba = np.concatenate([astronaut, np.full((512, 512, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(as_rgb_uint8(rgba), astronaut)
    np.testing.assert_array_equal(as_rgb_uint8(Image.fromarray(astronaut)), astronaut)


def test_several_people_the_largest_is_used(astronaut: np.ndarray) -> None:
    import cv2

    # the astronaut twice, the right copy at 0.8 size, bottom-aligned, on a grey background
    small = cv2.resize(astronaut, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    canvas = np.full((512, 1024, 3), 128, np.uint8)
    canvas[:, :512] = astronaut
    canvas[512 - small.shape[0]:, 1024 - small.shape[1]:] = small
    result = estimate_pose(canvas)
    assert result.num_people == 2
    single = estimate_pose(astronaut)
    nose = result.landmarks[0, :2]
    assert np.hypot(*(nose - single.landmarks[0, :2])) < 10  # the big (left) one
