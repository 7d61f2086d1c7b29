"""One call for node 1: pose + human parsing of a photo, on one device (local torch or gvirtus remote).

    pre = preprocess(photo, device="cpu")            # or a gvirtus RemoteDevice
    pre.body25 (25, 3)  pre.pose_json  pre.parse (H, W) uint8  pre.person_mask (H, W) uint8 (or None)
    pre.timings_ms {"pose": .., "parse": .., "total": .., "pose.<stage>": ..}
    pre.device  "cpu" / "gvirtus:host:port"

Both steps run where `device` says, as one program on it: the pose step (node1.pose.PoseStep) leaves the
photo on the device, and one last launch there computes the person mask and the parse map from it
(MaskAndParse). Through gvirtus the photo crosses to node 2 once and only small results come back: the
landmarks and the (H, W) uint8 parse map, plus the (H, W) uint8 person mask when the caller asks for it
(`with_mask`: no try-on engine reads it, so the try-on runners leave it on the device). Locally the same
stages run on the CPU, with the same results as estimate_pose followed by parse_person.

Device errors (gvirtus.RemoteDeviceLost, ...) pass through for the caller's circuit breaker:
node1.tryon.fallback.FallbackDevice(connect).run(preprocess, photo) tries the remote device and reruns the whole
call locally when it fails. NoPersonDetected / InvalidImage come from node1.pose.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from node1.parsing import parsing_module
from node1.parsing.model import WORK_LONG_SIDE
from node1.parsing.runner import GRIDS_CACHED
from node1.pose import PoseMask, PoseStep, as_rgb_uint8, openpose_json


@dataclass
class Preprocessed:
    """Everything VITON needs from a photo of a person.

    image: (H, W, 3) uint8 RGB, the photo as used.
    landmarks: (33, 4) float32 BlazePose [x px, y px, z, visibility].
    body25: (25, 3) float32 OpenPose BODY_25 [x px, y px, confidence]; missing = 0, 0, 0.
    pose_json: OpenPose layout {"version": 1.3, "people": [{"pose_keypoints_2d": [...]}]}.
    parse: (H, W) uint8 CIHP-20 labels, 0 outside the person.
    person_mask: (H, W) uint8 in [0, 255], 255 = person (the pose model's segmentation); None when the
        caller did not ask for it (preprocess(..., with_mask=False)).
    timings_ms: "pose" (until the keypoints are known), "parse" (the mask + parse map), "total"; plus the
        pose step's own stages as "pose.<name>".
    device: the device that served both steps ("cpu", "cuda:0", "gvirtus:127.0.0.1:8888").
    """

    image: np.ndarray
    landmarks: np.ndarray
    body25: np.ndarray
    pose_json: dict[str, Any]
    parse: np.ndarray
    person_mask: np.ndarray | None
    device: str
    num_people: int = 1
    timings_ms: dict[str, float] = field(default_factory=dict)


class MaskAndParse(nn.Module):
    """The last stage of preprocess, one launch on the device holding the photo: the pose's person mask,
    then the CIHP parsing of the photo with that mask.

    forward(image, seg, roi, landmarks) -> (mask, parse), or parse alone when built with_mask=False (the
    mask is still computed, as the parsing reads it, but stays on the device):
        image: (H, W, 3) uint8 RGB, the photo as node1.pose.PoseStep left it on the device.
        seg: (1, 1, 256, 256) float32 person probability of the pose ROI crop; roi: (4,) float32
            [cx, cy, side, theta] (node1.pose.PoseStep.seg / .roi).
        landmarks: (1, 33, 4) float32 [x px, y px, z, visibility] (node1.pose.PoseStep.landmarks).
        mask: (H, W) uint8, 255 = person. parse: (H, W) uint8 CIHP-20 labels, 0 outside the person.
    """

    def __init__(self, parsing: nn.Module, with_mask: bool = True) -> None:
        super().__init__()
        self.mask, self.parsing, self.with_mask = PoseMask(), parsing, with_mask

    def forward(self, image: torch.Tensor, seg: torch.Tensor, roi: torch.Tensor, landmarks: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        mask = self.mask(image, seg, roi)
        parse = self.parsing(image[None], mask[None, None], landmarks)[0][0]
        return (mask, parse) if self.with_mask else parse


def mask_and_parse(cpu_fast: bool) -> nn.Module:
    """The MaskAndParse stage (a node1.pose.runners StageFactory): the local-CPU parsing module when
    ``cpu_fast``, the portable one for gvirtus and GPUs."""
    return MaskAndParse(parsing_module(cpu_fast))


def mask_and_parse_on(work_long_side: int, with_mask: bool = True) -> Callable[[bool], nn.Module]:
    """The MaskAndParse StageFactory with the parsing's working grid at `work_long_side` px (the live
    mirror's coarser grid), returning the mask too or not (`with_mask`); one factory object per variant,
    named after it (the runners key on the factory)."""
    return _mask_and_parse_factory(work_long_side, with_mask)


@functools.lru_cache(maxsize=2 * GRIDS_CACHED)
def _mask_and_parse_factory(work_long_side: int, with_mask: bool) -> Callable[[bool], nn.Module]:
    if work_long_side == WORK_LONG_SIDE and with_mask:
        return mask_and_parse

    def factory(cpu_fast: bool) -> nn.Module:
        return MaskAndParse(parsing_module(cpu_fast, work_long_side), with_mask)

    name = f"mask_and_parse_{work_long_side}" if with_mask else f"parse_{work_long_side}"
    factory.__qualname__ = factory.__name__ = name
    return factory


def last_launch(step: Any, landmarks: np.ndarray, *, work_long_side: int = WORK_LONG_SIDE, with_mask: bool = True
                ) -> tuple[np.ndarray | None, np.ndarray]:
    """A pose step's last launch (MaskAndParse on the photo the step left on its device), the last reader of
    the photo and the segmentation there, which the device frees after it.

    Args:
        step: a node1.pose.PoseStep (or the live tracker's step) holding the photo, segmentation and ROI.
        landmarks: (33, 4) float32 [x px, y px, z, visibility], the step's own or smoothed ones.
    Returns:
        mask: (H, W) uint8 (255 = person), or None when not `with_mask` (it stays on the device);
        parse: (H, W) uint8 CIHP-20 labels.
    """
    outs = step.call(mask_and_parse_on(work_long_side, with_mask), step.photo, step.seg, step.roi,
                     torch.from_numpy(landmarks)[None], free=(step.photo, step.seg))
    mask, parse = outs if with_mask else (None, outs[0])
    return (None if mask is None else mask.numpy()), parse.numpy()


def preprocess(photo: Any, device: Any = "cpu", *, with_mask: bool = True,
               on_stage: Callable[[str, float], None] | None = None) -> Preprocessed:
    """Pose + parsing of one photo on `device` (a local torch device or a gvirtus RemoteDevice).

    Args:
        photo: (H, W, 3) uint8 RGB array (grey / RGBA / PIL accepted); short side >= 128 px.
        with_mask: bring the person mask back too (Preprocessed.person_mask); False leaves it on the
            device (0.79 MB less from node 2 at 768x1024: what the try-on runners do, as no engine reads it).
        on_stage: called with ("pose", ms) once the keypoints are known and ("parsing", ms) once the parse
            map is, each with that stage's own time (again for the local rerun when a fallback retries).
    Raises:
        node1.pose errors (InvalidImage, NoPersonDetected); device errors pass through.
    """
    t0 = time.perf_counter()
    img = as_rgb_uint8(photo)
    with PoseStep(img, device) as step:
        t1 = time.perf_counter()
        if on_stage is not None:
            on_stage("pose", (t1 - t0) * 1000.0)
        mask, parse = last_launch(step, step.landmarks, with_mask=with_mask)
        t2 = time.perf_counter()
        if on_stage is not None:
            on_stage("parsing", (t2 - t1) * 1000.0)
        pose = step.result(mask, last_stage="mask_parse")
    t3 = time.perf_counter()
    timings = {"pose": (t1 - t0) * 1000.0, "parse": (t2 - t1) * 1000.0, "total": (t3 - t0) * 1000.0}
    timings.update({f"pose.{k}": v for k, v in pose.timings_ms.items()})
    return Preprocessed(image=img, landmarks=pose.landmarks, body25=pose.body25,
                        pose_json=openpose_json(pose.body25), parse=parse, person_mask=pose.mask,
                        device=pose.served_by, num_people=pose.num_people, timings_ms=timings)
