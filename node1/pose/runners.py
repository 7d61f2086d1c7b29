"""Where the stages run: a local torch device, or a gvirtus remote device. One interface:

    call(stage, *inputs, keep=False) -> tuple    run a stage; keep=True leaves the outputs on the device
                                                 (handles for the next call), else host (CPU) tensors
    release(*handles)                            free kept outputs
    name                                         which device served (reported per call)

Inputs may be host tensors or handles returned by an earlier ``call(..., keep=True)``.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import torch
from torch import nn

from node1.pose.stages import (
    FACE_DETECTOR_SIZE,
    FACE_STRIDES,
    POSE_DETECTOR_SIZE,
    POSE_STRIDES,
    SELFIE_SIZE,
    FullImageInput,
    PoseCrop,
    PoseLandmarks,
    PoseMask,
    PrepareImage,
    ResizeMask,
    SelfieModel,
    SsdDetector,
)
from node1.tflite import load_model

# stages whose weights are large; all others are weight-free glue
MODEL_STAGES = ("pose_detector", "pose_landmarks", "face_detector", "selfie")


@functools.lru_cache(maxsize=1)
def _cpu_stages() -> dict[str, nn.Module]:
    """Every stage module, loaded once per process on the CPU (eval mode)."""
    stages: dict[str, nn.Module] = {
        "prepare": PrepareImage(),
        "pose_input": FullImageInput(POSE_DETECTOR_SIZE, -1.0, 1.0),
        "pose_detector": SsdDetector(load_model("pose_detection.tflite", "nchw"), POSE_DETECTOR_SIZE, POSE_STRIDES),
        "pose_crop": PoseCrop(),
        "pose_landmarks": PoseLandmarks(load_model("pose_landmark_full.tflite", "nchw")),
        "pose_mask": PoseMask(),
        "face_input": FullImageInput(FACE_DETECTOR_SIZE, -1.0, 1.0),
        "face_detector": SsdDetector(load_model("face_detection_short_range.tflite", "nchw"),
                                     FACE_DETECTOR_SIZE, FACE_STRIDES),
        "selfie_input": FullImageInput(SELFIE_SIZE, 0.0, 1.0, keep_aspect=False),
        "selfie": SelfieModel(load_model("selfie_segmentation.tflite", "nchw")),
        "selfie_resize": ResizeMask(),
    }
    return {k: m.eval() for k, m in stages.items()}


def stage_module(stage: str) -> nn.Module:
    """The CPU instance of a stage module (for registration, tracing or benchmarks)."""
    return _cpu_stages()[stage]


class LocalRunner:
    """Runs the stages on a local torch device ("cpu", "cuda:0", ...)."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.name = str(self.device)
        self._lock = threading.Lock()
        self._modules: dict[str, nn.Module] = {}

    def module(self, stage: str) -> nn.Module:
        with self._lock:
            if stage not in self._modules:
                mod = stage_module(stage)
                if self.device.type != "cpu":
                    import copy

                    mod = copy.deepcopy(mod).to(self.device)
                self._modules[stage] = mod
            return self._modules[stage]

    def call(self, stage: str, *inputs: torch.Tensor, keep: bool = False) -> tuple[Any, ...]:
        with torch.inference_mode():
            out = self.module(stage)(*(t.to(self.device) for t in inputs))
        outs = out if isinstance(out, tuple) else (out,)
        return outs if keep else tuple(o.cpu() for o in outs)

    def release(self, *handles: Any) -> None:
        """Local tensors are freed by reference counting."""
