"""The parsing module runs remotely through gvirtus (a real backend on loopback) with the local result."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import pytest

from tests.parsing.conftest import Case

PER_REQUEST_OVERHEAD_BYTES = 64 * 1024   # request headers, the ROI and landmarks, a heartbeat: far below a photo


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


@pytest.fixture
def one_thread_here() -> Iterator[None]:
    """The test backend runs 1 torch thread: at 1 thread here too, CPU convolutions sum in the same order."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.usefixtures("one_thread_here")
def test_preprocess_through_gvirtus_equals_local_and_sends_the_photo_once(remote_device) -> None:
    """Pose and parsing as one program on the backend: the same bits as locally, the photo sent once (measured
    by the kernel's TCP counters of this process's connections to the backend), and nothing left there."""
    from gvirtus.testing import backend_ports, tcp_bytes_sent
    from node1.tryon.preprocess import preprocess
    from tests.parsing.conftest import photo

    img = photo("astronaut")
    local = preprocess(img, "cpu")
    preprocess(img, remote_device)            # registers the stages (their weights go once per backend)
    ports = backend_ports(remote_device)
    before = tcp_bytes_sent(ports)
    remote = preprocess(img, remote_device)
    sent = tcp_bytes_sent(ports) - before
    assert local.device == "cpu" and remote.device.startswith("gvirtus:")
    np.testing.assert_array_equal(remote.parse, local.parse)
    np.testing.assert_array_equal(remote.person_mask, local.person_mask)
    np.testing.assert_array_equal(remote.landmarks, local.landmarks)
    assert remote.person_mask.dtype == np.uint8 and remote.person_mask.shape == img.shape[:2]
    assert img.nbytes <= sent < img.nbytes + PER_REQUEST_OVERHEAD_BYTES, f"{sent} bytes for a {img.nbytes}-byte photo"
    assert remote_device.stats()["session_bytes"] == 0     # the photo and every intermediate were freed
    assert len(remote.pose_json["people"][0]["pose_keypoints_2d"]) == 75


@pytest.mark.usefixtures("one_thread_here")
def test_without_the_mask_it_stays_on_the_backend(remote_device) -> None:
    """preprocess(with_mask=False), as the try-on runners call it (no engine reads the mask): the same parse
    map and landmarks, no mask, and the (H, W) uint8 mask's bytes no longer come back (measured on the wire)."""
    from gvirtus.testing import backend_ports, tcp_bytes_received
    from node1.tryon.preprocess import preprocess
    from tests.parsing.conftest import photo

    img = photo("astronaut")
    ports = backend_ports(remote_device)
    got = {}
    for with_mask in (True, False, True, False):          # the second of each: stages already registered
        before = tcp_bytes_received(ports)
        pre = preprocess(img, remote_device, with_mask=with_mask)
        got[with_mask] = (tcp_bytes_received(ports) - before, pre)
    (with_bytes, full), (without_bytes, lean) = got[True], got[False]
    assert full.person_mask is not None and lean.person_mask is None
    np.testing.assert_array_equal(lean.parse, full.parse)
    np.testing.assert_array_equal(lean.landmarks, full.landmarks)
    mask_bytes = img.shape[0] * img.shape[1]      # as many as the parse map's, which still comes back
    assert without_bytes < mask_bytes + PER_REQUEST_OVERHEAD_BYTES, f"{without_bytes} bytes came back without it"
    assert with_bytes - without_bytes >= mask_bytes, f"{with_bytes} with the mask, {without_bytes} without"
    assert remote_device.stats()["session_bytes"] == 0                   # the kept mask was freed on the backend


def test_the_local_fallback_reruns_a_preprocess_whose_backend_dies_midway() -> None:
    """The backend is killed after the pose step, before the mask + parse launch: FallbackDevice reruns the
    whole call locally and returns the local result."""
    import gvirtus
    from gvirtus.testing import BackendProcess
    from node1.tryon.fallback import FallbackDevice
    from node1.tryon.preprocess import preprocess
    from tests.parsing.conftest import photo

    img = photo("camera")
    with BackendProcess(torch_threads=1) as backend:
        killed: list[str] = []

        def kill_after_pose(stage: str, ms: float) -> None:
            if stage == "pose" and not killed:
                killed.append(stage)
                backend.kill()

        chooser = FallbackDevice(lambda: gvirtus.connect(backend.target, token=backend.token), local="cpu")
        try:
            pre = chooser.run(functools.partial(preprocess, on_stage=kill_after_pose), img)
        finally:
            chooser.close()
    assert killed == ["pose"] and chooser.last_served_by == "cpu" and pre.device == "cpu"
    local = preprocess(img, "cpu")
    np.testing.assert_array_equal(pre.parse, local.parse)
    np.testing.assert_array_equal(pre.person_mask, local.person_mask)
