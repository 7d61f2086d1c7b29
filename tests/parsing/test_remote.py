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
    assert local.person_mask.dtype == np.uint8 and local.person_mask.shape == img.shape[:2]
    assert set(local.timings_ms) >= {"pose", "parse", "render", "total"}
    assert len(local.pose_json["people"][0]["pose_keypoints_2d"]) == 75
