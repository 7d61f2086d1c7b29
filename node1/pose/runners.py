"""Where the stages run: a local torch device, or a gvirtus remote device. One interface:

    call(stage, *inputs, keep=False, free=()) -> tuple
                                                 run a stage; keep=True leaves the outputs on the device
                                                 (handles for the next call), else host (CPU) tensors;
                                                 keep=[bool, ...] decides per output; free: kept handles
                                                 this call reads last, freed by the device after it
                                                 (also if it fails; no round trip of their own)
    release(*handles)                            free kept outputs
    name                                         which device served (reported per call)

A stage is the name of one of this package's stages, or a ``StageFactory``: a function
``factory(cpu_fast) -> nn.Module`` of another package's module (node1.tryon.preprocess's mask + parsing), run
the same way. Inputs may be host tensors or handles returned by an earlier ``call(..., keep=True)``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

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
    PreparedInput,
    PrepareImage,
    ResizeMask,
    SelfieModel,
    SsdDetector,
)
from node1.tflite import load_model

StageFactory: TypeAlias = Callable[[bool], nn.Module]   # cpu_fast -> the stage's module (CPU, eval mode)
Stage: TypeAlias = str | StageFactory
Keep: TypeAlias = bool | Sequence[bool]

# stages whose weights are large; all others are weight-free glue
MODEL_STAGES = ("pose_detector", "pose_landmarks", "face_detector", "selfie")


MODEL_INPUTS = {  # model stage -> (tflite file, example input (1, 3, N, N))
    "pose_detector": ("pose_detection.tflite", POSE_DETECTOR_SIZE),
    "pose_landmarks": ("pose_landmark_full.tflite", 256),
    "face_detector": ("face_detection_short_range.tflite", FACE_DETECTOR_SIZE),
    "selfie": ("selfie_segmentation.tflite", SELFIE_SIZE),
}


# Stages that take the oneDNN lowering when cpu_fast. The pose detector takes the bit-exact one instead: its
# keypoints set the ROI, and mediapipe's pipeline is so sensitive to the ROI (heatmap-window flips) that
# ~1e-4 px changes from float rounding moved a hand by 25 px on skimage's camera photo with the fused
# detector, while the portable arithmetic reproduces mediapipe there (docs/pose.md, "Sensitivity"). The
# landmark model is not sensitive.
CPU_FAST_STAGES = ("pose_landmarks", "face_detector", "selfie")
CPU_EXACT_STAGES = ("pose_detector",)


def _model(stage: str, cpu_fast: bool) -> nn.Module:
    file_name, size = MODEL_INPUTS[stage]
    model = load_model(file_name, "nchw")
    if cpu_fast and stage in CPU_FAST_STAGES + CPU_EXACT_STAGES:
        from node1.tflite.cpu import optimize_exact_for_cpu, optimize_for_cpu

        example = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        optimize = optimize_exact_for_cpu if stage in CPU_EXACT_STAGES else optimize_for_cpu
        return optimize(model, example)
    return model


_LOADED_KINDS: set[bool] = set()   # which kinds _cpu_stages has built (health reads it)


@functools.lru_cache(maxsize=2)
def _cpu_stages(cpu_fast: bool = False) -> dict[str, nn.Module]:
    """Every stage module, loaded once per process on the CPU (eval mode).

    cpu_fast=False: portable aten ops only (what gvirtus registers, and what runs on GPUs).
    cpu_fast=True: the models lowered by node1.tflite.cpu (channels-last, fused oneDNN convolutions);
    same results up to float rounding, about 2x faster on this CPU.
    """
    stages: dict[str, nn.Module] = {
        "prepare": PrepareImage(),
        "pose_detector": SsdDetector(_model("pose_detector", cpu_fast), POSE_DETECTOR_SIZE, POSE_STRIDES),
        "pose_crop": PoseCrop(),
        "pose_landmarks": PoseLandmarks(_model("pose_landmarks", cpu_fast)),
        "pose_mask": PoseMask(),
        "face_input": FullImageInput(FACE_DETECTOR_SIZE, -1.0, 1.0),
        "face_detector": SsdDetector(_model("face_detector", cpu_fast), FACE_DETECTOR_SIZE, FACE_STRIDES),
        "selfie_input": FullImageInput(SELFIE_SIZE, 0.0, 1.0, keep_aspect=False),
        "selfie": SelfieModel(_model("selfie", cpu_fast)),
        "selfie_resize": ResizeMask(),
    }
    # the detector's keypoints set the ROI (see CPU_EXACT_STAGES): a gvirtus CPU backend lowers it exactly too
    stages["pose_detector"].gvirtus_exact = True  # type: ignore[assignment]  # read by gvirtus.graph.capture
    # upload + the detector's letterbox in one launch (no stage of its own: nothing else reads the letterbox)
    stages["pose_prepare"] = PreparedInput(stages["prepare"], FullImageInput(POSE_DETECTOR_SIZE, -1.0, 1.0))
    _LOADED_KINDS.add(cpu_fast)
    return {k: m.eval() for k, m in stages.items()}


def loaded_stage_sets(cpu_fast: bool) -> bool:
    """Whether the stage modules of this kind are already loaded (loads nothing; health reads it)."""
    return cpu_fast in _LOADED_KINDS


def stage_module(stage: Stage, cpu_fast: bool = False) -> nn.Module:
    """A stage module on the CPU; the portable one by default (for gvirtus registration, tracing, GPUs).

    stage: a stage name of this package, or a StageFactory (built once per process and cpu_fast)."""
    if callable(stage):
        return _factory_module(stage, cpu_fast)
    return _cpu_stages(cpu_fast)[stage]


@functools.lru_cache(maxsize=8)
def _factory_module(factory: StageFactory, cpu_fast: bool) -> nn.Module:
    return factory(cpu_fast).eval()


def stage_name(stage: Stage) -> str:
    """A stage's name for logs and cache keys: its own, or its factory's qualified name."""
    return stage if isinstance(stage, str) else f"{stage.__module__}.{stage.__qualname__}"


def kept_outputs(outs: tuple[Any, ...], keep: Keep) -> list[bool]:
    """One keep flag per output of a stage call (keep: a bool for all, or one bool per output)."""
    if isinstance(keep, bool):
        return [keep] * len(outs)
    flags = list(keep)
    if len(flags) != len(outs):
        raise ValueError(f"keep names {len(flags)} outputs, the stage returned {len(outs)}")
    return flags


class LocalRunner:
    """Runs the stages on a local torch device ("cpu", "cuda:0", ...).

    On the CPU the models use the oneDNN lowering (``cpu_fast``, default True there); pass
    ``cpu_fast=False`` for the portable graph that gvirtus runs (bit-identical to it at equal thread counts).
    """

    def __init__(self, device: str | torch.device = "cpu", cpu_fast: bool | None = None) -> None:
        self.device = torch.device(device)
        self.cpu_fast = self.device.type == "cpu" if cpu_fast is None else cpu_fast and self.device.type == "cpu"
        self.name = str(self.device)
        self._lock = threading.Lock()
        self._modules: dict[Stage, nn.Module] = {}
        if self.device.type == "cuda":  # TF32 moved landmarks by up to 7 px on an H100 (bench/RESULTS.md, GPU)
            from gvirtus.device import use_full_float32

            use_full_float32(self.device)

    def module(self, stage: Stage) -> nn.Module:
        with self._lock:
            if stage not in self._modules:
                mod = stage_module(stage, self.cpu_fast)
                if self.device.type != "cpu":
                    import copy

                    mod = copy.deepcopy(mod).to(self.device)
                self._modules[stage] = mod
            return self._modules[stage]

    def call(self, stage: Stage, *inputs: torch.Tensor, keep: Keep = False, free: Sequence[Any] = ()
             ) -> tuple[Any, ...]:
        """Run a stage (see the module docstring); ``free`` is moot here: local tensors go with their last use."""
        with torch.inference_mode():
            out = self.module(stage)(*(t.to(self.device) for t in inputs))
        outs = out if isinstance(out, tuple) else (out,)
        return tuple(o if k else o.cpu() for o, k in zip(outs, kept_outputs(outs, keep), strict=True))

    def release(self, *handles: Any) -> None:
        """Local tensors are freed by reference counting."""
