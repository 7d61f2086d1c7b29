"""Where ParsingModule runs: a local torch device, or a gvirtus RemoteDevice (same device as the pose).

    runner = parsing_runner(device)        # "cpu", torch.device, or a gvirtus RemoteDevice
    parse, parts, face = runner(image, mask, landmarks)      # host tensors back

Local: one module per torch device, moved there once. Remote: the module is registered once per input
shape/dtype on the RemoteDevice (make_fx capture; its face-detector weights are content-hashed, so
they are uploaded once per backend) and re-registered after a reconnect.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import torch

from node1.parsing.model import WORK_LONG_SIDE, ParsingModule

GRIDS_CACHED = 4   # working-grid sizes whose modules a process keeps (stills and the live mirror use two)


@functools.lru_cache(maxsize=GRIDS_CACHED)
def cpu_module(work_long_side: int = WORK_LONG_SIDE) -> ParsingModule:
    """The process-wide portable ParsingModule on the CPU (eval mode): standard aten ops only, what gvirtus
    registers and what other torch devices get a copy of."""
    return ParsingModule(work_long_side=work_long_side).eval()


@functools.lru_cache(maxsize=1)
def _cpu_fast_detector() -> torch.nn.Module:
    from node1.tflite import load_model
    from node1.tflite.cpu import optimize_for_cpu

    detector = load_model("face_detection_short_range.tflite", layout="nchw")
    return optimize_for_cpu(detector, torch.rand(1, 3, 128, 128))


@functools.lru_cache(maxsize=GRIDS_CACHED)
def cpu_fast_module(work_long_side: int = WORK_LONG_SIDE) -> ParsingModule:
    """The local-CPU ParsingModule: its face detector lowered by node1.tflite.cpu (channels-last, fused
    oneDNN convolutions; the same results up to float rounding, checked there), as node1.pose does."""
    return ParsingModule(_cpu_fast_detector(), work_long_side=work_long_side).eval()


def parsing_module(cpu_fast: bool = False, work_long_side: int = WORK_LONG_SIDE) -> ParsingModule:
    """The process-wide ParsingModule: the local-CPU one (``cpu_fast``) or the portable one (gvirtus, GPUs)."""
    return cpu_fast_module(work_long_side) if cpu_fast else cpu_module(work_long_side)


class LocalParsing:
    """ParsingModule on a local torch device."""

    def __init__(self, device: str | torch.device = "cpu", work_long_side: int = WORK_LONG_SIDE) -> None:
        self.device = torch.device(device)
        self.name = str(self.device)
        mod = parsing_module(self.device.type == "cpu", work_long_side)
        if self.device.type == "cuda":  # float32 as on the CPU, not TF32 (node1.pose.runners)
            from gvirtus.device import use_full_float32

            use_full_float32(self.device)
        if self.device.type != "cpu":
            import copy

            mod = copy.deepcopy(mod).to(self.device)
        self.module = mod

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, landmarks: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            out = self.module(image.to(self.device), mask.to(self.device), landmarks.to(self.device))
        return out[0].cpu(), out[1].cpu(), out[2].cpu()


class RemoteParsing:
    """ParsingModule registered on a gvirtus RemoteDevice; each call is one launch."""

    def __init__(self, device: Any, work_long_side: int = WORK_LONG_SIDE) -> None:
        self.device = device
        self.work_long_side = work_long_side
        self.name = f"gvirtus:{device.target}"
        self._lock = threading.Lock()
        self._registered: dict[tuple[Any, ...], Any] = {}

    def _module(self, inputs: tuple[torch.Tensor, ...]) -> Any:
        key = (self.device.generation, *((str(t.dtype), tuple(t.shape)) for t in inputs))
        with self._lock:
            mod = self._registered.get(key)
        if mod is None:
            mod = self.device.register_module(cpu_module(self.work_long_side), list(inputs))
            with self._lock:
                self._registered[key] = mod
        return mod

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, landmarks: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs = (image, mask, landmarks)
        out = self._module(inputs)(*inputs)
        return out[0], out[1], out[2]


_lock = threading.Lock()
_local: dict[tuple[str, int], LocalParsing] = {}
_remote: dict[tuple[int, int], RemoteParsing] = {}


def parsing_runner(device: Any, work_long_side: int = WORK_LONG_SIDE) -> LocalParsing | RemoteParsing:
    """The runner for `device`: a local torch device ("cpu", "cuda:0", torch.device) or a gvirtus
    RemoteDevice (anything with `register_module`), with a working grid of `work_long_side` px."""
    if isinstance(device, (str, torch.device)):
        key = (str(torch.device(device)), work_long_side)
        with _lock:
            if key not in _local:
                _local[key] = LocalParsing(key[0], work_long_side)
            return _local[key]
    if not hasattr(device, "register_module"):
        from node1.parsing.errors import InvalidParsingInput

        raise InvalidParsingInput(f"device must be a torch device or a gvirtus RemoteDevice, got "
                                  f"{type(device).__name__}")
    with _lock:
        runner = _remote.get((id(device), work_long_side))
        if runner is None or runner.device is not device:
            runner = _remote[(id(device), work_long_side)] = RemoteParsing(device, work_long_side)
        return runner
