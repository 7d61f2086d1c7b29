"""The parsing module runs remotely through gvirtus (a real backend on loopback) with the local result."""

from __future__ import annotations

import numpy as np
import pytest

from tests.parsing.conftest import Case


@pytest.fixture(scope="module")
def remote_device():
    import gvirtus
    from gvirtus.testing import BackendProcess

    with BackendProcess(torch_threads=1) as backend:
        dev = gvirtus.connect(backend.target, token=backend.token)
        try:
            yield dev
        finally:
            dev.close()


def test_remote_parse_equals_local(cases: dict[str, Case], remote_device) -> None:
    from node1.parsing import parse_person

    c = cases["astronaut"]
    remote = parse_person(c.image, c.landmarks, c.mask, remote_device)
    assert remote.served_by.startswith("gvirtus:")
    assert remote.parse.dtype == np.uint8 and remote.parse.shape == c.parse.shape
    same = float((remote.parse == c.parse).mean())
    assert same >= 0.9999, f"remote parse differs from local on {1 - same:.3%} of the pixels"
    assert np.array_equal(remote.parts, c.result.parts)
    assert remote.face["valid"] == c.result.face["valid"]
    np.testing.assert_allclose(remote.face["centre"], c.result.face["centre"], atol=0.05)


def _on_device(dev, image: np.ndarray):  # noqa: ANN001, ANN202 - a gvirtus DeviceBuffer of the photo
    import torch

    from node1.pose.stages import PrepareImage

    x = torch.from_numpy(image)
    return dev.register_module(PrepareImage(), [x])(x, keep_on_device=True)


def test_photo_already_on_the_device_gives_the_same_parse(cases: dict[str, Case], remote_device) -> None:
    from node1.parsing import parse_person

    c = cases["astronaut"]
    uploaded = parse_person(c.image, c.landmarks, c.mask, remote_device)
    photo = _on_device(remote_device, c.image)
    try:
        kept = parse_person(c.image, c.landmarks, c.mask, remote_device, device_image=photo)
    finally:
        remote_device.free(photo)
    assert np.array_equal(kept.parse, uploaded.parse) and np.array_equal(kept.parts, uploaded.parts)
    assert kept.face == uploaded.face


def test_a_device_image_of_another_photo_is_refused(cases: dict[str, Case], remote_device) -> None:
    from node1.parsing import InvalidParsingInput, parse_person

    c = cases["astronaut"]
    other = _on_device(remote_device, np.ascontiguousarray(c.image[:-8]))
    try:
        with pytest.raises(InvalidParsingInput, match=r"device_image must be this device's uint8 \(512, 512, 3\) "
                                                      r"copy of the photo, got uint8 \(504, 512, 3\)"):
            parse_person(c.image, c.landmarks, c.mask, remote_device, device_image=other)
    finally:
        remote_device.free(other)
    local = parse_person(c.image, c.landmarks, c.mask, "cpu", device_image=other)  # ignored locally
    assert local.served_by == "cpu"


@pytest.mark.slow  # registers every pose stage remotely as well: ~2 min on the shared 2-core machine
def test_preprocess_remote_reports_the_device(remote_device) -> None:
    from node1.preprocess import preprocess
    from tests.parsing.conftest import photo

    img = photo("camera")
    local, remote = preprocess(img, "cpu"), preprocess(img, remote_device)
    assert local.device == "cpu" and remote.device.startswith("gvirtus:")
    # the remote pose differs from the local one by float summation order only (sub-pixel landmarks),
    # which may move a few label boundaries by a working-grid cell
    assert float((local.parse == remote.parse).mean()) >= 0.995
    assert local.pose_image.shape == img.shape and local.pose_image.dtype == np.uint8
    assert local.person_mask.dtype == np.float32 and 0.0 <= local.person_mask.min() <= local.person_mask.max() <= 1.0
    assert set(local.timings_ms) >= {"pose", "parse", "render", "total"}
    assert len(local.pose_json["people"][0]["pose_keypoints_2d"]) == 75
