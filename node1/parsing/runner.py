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

from node1.parsing.model import ParsingModule


@functools.lru_cache(maxsize=1)
def cpu_module() -> ParsingModule:
    """The process-wide portable ParsingModule on the CPU (eval mode): standard aten ops only, what gvirtus
    registers and what other torch devices get a copy of."""
    return ParsingModule().eval()


@functools.lru_cache(maxsize=1)
def cpu_fast_module() -> ParsingModule:
    """The local-CPU ParsingModule: its face detector lowered by node1.tflite.cpu (channels-last, fused
    oneDNN convolutions; the same results up to float rounding, checked there), as node1.pose does."""
    from node1.tflite import load_model
    from node1.tflite.cpu import optimize_for_cpu

    detector = load_model("face_detection_short_range.tflite", layout="nchw")
    return ParsingModule(optimize_for_cpu(detector, torch.rand(1, 3, 128, 128))).eval()


def parsing_module(cpu_fast: bool = False) -> ParsingModule:
    """The process-wide ParsingModule: the local-CPU one (``cpu_fast``) or the portable one (gvirtus, GPUs)."""
    return cpu_fast_module() if cpu_fast else cpu_module()


class LocalParsing:
    """ParsingModule on a local torch device."""

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.name = str(self.device)
        mod: ParsingModule = cpu_fast_module() if self.device.type == "cpu" else cpu_module()
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

    def __init__(self, device: Any) -> None:
        self.device = device
        self.name = f"gvirtus:{device.target}"
        self._lock = threading.Lock()
        self._registered: dict[tuple[Any, ...], Any] = {}

    def _module(self, inputs: tuple[torch.Tensor, ...]) -> Any:
        key = (self.device.generation, *((str(t.dtype), tuple(t.shape)) for t in inputs))
        with self._lock:
            mod = self._registered.get(key)
        if mod is None:
            mod = self.device.register_module(cpu_module(), list(inputs))
            with self._lock:
                self._registered[key] = mod
        return mod

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, landmarks: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inputs = (image, mask, landmarks)
        out = self._module(inputs)(*inputs)
        return out[0], out[1], out[2]


_lock = threading.Lock()
_local: dict[str, LocalParsing] = {}
_remote: dict[int, RemoteParsing] = {}


def parsing_runner(device: Any) -> LocalParsing | RemoteParsing:
    """The runner for `device`: a local torch device ("cpu", "cuda:0", torch.device) or a gvirtus
    RemoteDevice (anything with `register_module`)."""
    if isinstance(device, (str, torch.device)):
        key = str(torch.device(device))
        with _lock:
            if key not in _local:
                _local[key] = LocalParsing(key)
            return _local[key]
    if not hasattr(device, "register_module"):
        from node1.parsing.errors import InvalidParsingInput

        raise InvalidParsingInput(f"device must be a torch device or a gvirtus RemoteDevice, got "
                                  f"{type(device).__name__}")
    with _lock:
        runner = _remote.get(id(device))
        if runner is None or runner.device is not device:
            runner = _remote[id(device)] = RemoteParsing(device)
        return runner
