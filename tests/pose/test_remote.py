"""The same numbers locally and through gvirtus (a real backend process on loopback).

The local CPU path lowers the models with node1.tflite.cpu; the CPU backend lowers the portable graphs it
is sent with gvirtus.lowering, by the same rules (the pose detector is registered "exact" and is lowered
bit-exactly on both sides, gvirtus.exactconv). The test backend runs 1 torch thread, so the local
reference runs with 1 thread too: then the numbers are bit-identical. (With a different thread count,
CPU convolutions may sum in another order; the ~1e-6 differences then move landmarks by up to ~0.05 px
on sensitive photos.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gvirtus
from gvirtus import testing
from node1.pose import detect_faces, estimate_pose, segment_person
from node1.pose.runners import LocalRunner
from node1.tryon.fallback import FallbackDevice

PORTABLE_CPU = LocalRunner("cpu", cpu_fast=False)  # the graphs gvirtus is sent, run unlowered


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def remote():
    with testing.BackendProcess(torch_threads=1) as backend:
        dev = gvirtus.connect(backend.target, token=backend.token)
        yield dev
        dev.close()


def test_pose_through_gvirtus_equals_local(remote, oracle_images: dict) -> None:
    for name in ("astronaut", "camera_flipped"):
        image = oracle_images[name]
        local = estimate_pose(image, "cpu")  # the default local path: models lowered by node1.tflite.cpu
        far = estimate_pose(image, remote)   # the portable graphs, lowered by the CPU backend (gvirtus.lowering)
        assert far.served_by.startswith("gvirtus:") and local.served_by == "cpu"
        np.testing.assert_array_equal(far.landmarks, local.landmarks)
        np.testing.assert_array_equal(far.body25, local.body25)
        np.testing.assert_array_equal(far.world_landmarks, local.world_landmarks)
        np.testing.assert_array_equal(far.mask, local.mask)
        portable = estimate_pose(image, PORTABLE_CPU)  # unlowered aten arithmetic: same up to float rounding
        assert np.abs(portable.landmarks[:, :2] - far.landmarks[:, :2]).max() < 0.5
    assert remote.stats()["session_bytes"] == 0  # intermediates kept on the device were freed


def test_faces_and_selfie_through_gvirtus_equal_local(remote, astronaut: np.ndarray) -> None:
    far, near = detect_faces(astronaut, remote), detect_faces(astronaut, "cpu")
    assert len(far) == len(near) == 1
    np.testing.assert_array_equal(far[0].keypoints, near[0].keypoints)
    np.testing.assert_array_equal(segment_person(astronaut, remote), segment_person(astronaut, "cpu"))


def test_another_image_size_through_the_same_backend(remote, astronaut: np.ndarray) -> None:
    """Every weight-free stage is registered again for a new size (its content hash covers the input specs:
    until session 4 the second size got the first size's 'prepare' module back and every launch failed)."""
    for image in (astronaut, np.ascontiguousarray(astronaut[:480, :448])):
        far, near = estimate_pose(image, remote), estimate_pose(image, "cpu")
        np.testing.assert_array_equal(far.landmarks, near.landmarks)
        assert far.mask.shape == image.shape[:2]
        assert len(detect_faces(image, remote)) == 1
        assert segment_person(image, remote).shape == image.shape[:2]
    assert remote.stats()["session_bytes"] == 0


def test_fallback_device_prefers_the_remote(remote, astronaut: np.ndarray) -> None:
    chooser = FallbackDevice(lambda: remote, local="cpu")
    assert chooser.run(estimate_pose, astronaut).served_by.startswith("gvirtus:")
    assert chooser.last_served_by == "remote"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine (CPU-only torch build)")
def test_pose_on_a_local_gpu_matches_cpu(astronaut: np.ndarray) -> None:
    gpu, cpu = estimate_pose(astronaut, "cuda:0"), estimate_pose(astronaut, PORTABLE_CPU)
    assert gpu.served_by.startswith("cuda")
    assert np.abs(gpu.landmarks[:, :2] - cpu.landmarks[:, :2]).max() < 0.5
