"""The gvirtus runner: stages registered once per input shape on a RemoteDevice, intermediates kept there.

Registration captures each stage at its input shapes (gvirtus uses make_fx); model stages always see the
same shapes, so their weights are uploaded once per backend (content-hashed); the weight-free stages are
registered again for each new image size.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import torch

from node1.pose.runners import Keep, Stage, stage_module

log = logging.getLogger("node1.pose.remote")


def _spec(x: Any) -> tuple[str, tuple[int, ...]]:
    from gvirtus import DeviceBuffer

    if isinstance(x, DeviceBuffer):
        return x.dtype, tuple(x.shape)
    from gvirtus.protocol import dtype_name

    return dtype_name(x.dtype), tuple(x.shape)


def _example(x: Any) -> torch.Tensor:
    from gvirtus import DeviceBuffer
    from gvirtus.protocol import torch_dtype

    if isinstance(x, DeviceBuffer):
        return torch.zeros(x.shape, dtype=torch_dtype(x.dtype))
    return x


class RemoteRunner:
    """Runs the stages on a gvirtus ``RemoteDevice`` (see node1.pose.runners for the interface)."""

    def __init__(self, device: Any) -> None:
        self._device = weakref.ref(device)  # weak: node1.pose caches runners per live device
        self.name = f"gvirtus:{device.target}"
        self._lock = threading.Lock()
        self._registered: dict[tuple[Any, ...], Any] = {}

    @property
    def device(self) -> Any:
        dev = self._device()
        if dev is None:
            raise RuntimeError(f"the gvirtus device of {self.name} is gone; connect again")
        return dev

    def _module(self, stage: Stage, inputs: tuple[Any, ...]) -> Any:
        key = (stage, self.device.generation, *(_spec(x) for x in inputs))
        with self._lock:
            mod = self._registered.get(key)
        if mod is None:
            examples = [_example(x) for x in inputs]
            mod = self.device.register_module(stage_module(stage), examples)
            with self._lock:
                self._registered[key] = mod
        return mod

    def call(self, stage: Stage, *inputs: Any, keep: Keep = False, free: Sequence[Any] = ()) -> tuple[Any, ...]:
        out = self._module(stage, inputs)(*inputs, keep_on_device=keep, free_after=free)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def release(self, *handles: Any) -> None:
        if not handles:
            return
        try:
            self.device.free_many(handles)  # one round trip for all of a step's intermediates
        except Exception as exc:  # noqa: BLE001 - freeing is best effort; the session's end frees the rest
            log.debug("freeing %d handles failed: %s", len(handles), exc)
