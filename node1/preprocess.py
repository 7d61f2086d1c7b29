"""One call for node 1: pose + human parsing of a photo, on one device (local torch or gvirtus remote).

    pre = preprocess(photo, device="cpu")            # or a gvirtus RemoteDevice
    pre.body25 (25, 3)  pre.pose_json  pre.parse (H, W) uint8  pre.person_mask (H, W) uint8
    pre.timings_ms {"pose": .., "parse": .., "render": .., "total": ..}
    pre.device  "cpu" / "gvirtus:host:port"

Both steps run where `device` says: the parsing module goes to the same device as the pose stages, so
a remote device runs both on node 2's GPU. Device errors (gvirtus.RemoteDeviceLost, ...) pass through
for the caller's circuit breaker: node1.pose.FallbackDevice(connect).run(preprocess, photo) tries the
remote device and reruns the whole call locally when it fails. NoPersonDetected / InvalidImage come
from node1.pose.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from node1.parsing import parse_person
from node1.pose import as_rgb_uint8, estimate_pose, openpose_json


@dataclass
class Preprocessed:
    """Everything VITON needs from a photo of a person.

    image: (H, W, 3) uint8 RGB, the photo as used.
    landmarks: (33, 4) float32 BlazePose [x px, y px, z, visibility].
    body25: (25, 3) float32 OpenPose BODY_25 [x px, y px, confidence]; missing = 0, 0, 0.
    pose_json: OpenPose layout {"version": 1.3, "people": [{"pose_keypoints_2d": [...]}]}.
    parse: (H, W) uint8 CIHP-20 labels, 0 outside the person.
    person_mask: (H, W) uint8 0..255 (the pose model's segmentation).
    timings_ms: per stage ("pose", "parse", "render") and "total"; plus the pose's own stages as "pose.<name>".
    device: the device that served both steps ("cpu", "cuda:0", "gvirtus:127.0.0.1:8888").
    """

    image: np.ndarray
    landmarks: np.ndarray
    body25: np.ndarray
    pose_json: dict[str, Any]
    parse: np.ndarray
    person_mask: np.ndarray
    device: str
    num_people: int = 1
    timings_ms: dict[str, float] = field(default_factory=dict)


def preprocess(photo: Any, device: Any = "cpu", on_stage: Callable[[str, float], None] | None = None
               ) -> Preprocessed:
    """Pose + parsing of one photo on `device` (a local torch device or a gvirtus RemoteDevice).

    Args:
        photo: (H, W, 3) uint8 RGB array (grey / RGBA / PIL accepted); short side >= 128 px.
        on_stage: called as on_stage("pose", ms) the moment pose estimation finishes, then
            on_stage("parsing", ms) when parsing does (the web page's progress events).
    Raises:
        node1.pose errors (InvalidImage, NoPersonDetected); device errors pass through.
    """
    t0 = time.perf_counter()
    img = as_rgb_uint8(photo)
    pose = estimate_pose(img, device)
    t1 = time.perf_counter()
    if on_stage is not None:
        on_stage("pose", (t1 - t0) * 1000.0)
    parsed = parse_person(img, pose.landmarks, pose.mask, device)
    t2 = time.perf_counter()
    if on_stage is not None:
        on_stage("parsing", (t2 - t1) * 1000.0)
    t3 = time.perf_counter()
    timings = {"pose": (t1 - t0) * 1000.0, "parse": (t2 - t1) * 1000.0, "render": (t3 - t2) * 1000.0,
               "total": (t3 - t0) * 1000.0}
    timings.update({f"pose.{k}": v for k, v in pose.timings_ms.items()})
    if parsed.served_by != pose.served_by:  # both resolve the same device, so this would be a bug
        raise RuntimeError(f"pose ran on {pose.served_by} but parsing on {parsed.served_by}")
    return Preprocessed(image=img, landmarks=pose.landmarks, body25=pose.body25,
                        pose_json=openpose_json(pose.body25), parse=parsed.parse, person_mask=pose.mask,
                        device=pose.served_by, num_people=pose.num_people,
                        timings_ms=timings)
