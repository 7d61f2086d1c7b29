"""The module layer's client side: DeviceBuffer handles and RemoteModule (a graph registered on the backend).

    mod = dev.register_module(net, [example])      # gvirtus.frontend.RemoteDevice.register_module
    out = mod(image)                               # host torch tensors, in the module's output structure
    h = mod(image, keep_on_device=True)            # DeviceBuffers, inputs of the next launch
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gvirtus.errors import GvirtusError, InvalidRequest
from gvirtus.graph import CapturedGraph, Spec, as_tensor
from gvirtus.proto import gvirtus_pb2 as pb
from gvirtus.protocol import dtype_name, from_wire, to_wire
from gvirtus.session_api import DeviceSession

LAUNCH_HEADROOM_BYTES = 64 * 1024   # protobuf framing around inline launch inputs


@dataclass(frozen=True)
class DeviceBuffer:
    """A handle to memory on the remote device, valid only in the session that made it.

    `dtype`/`shape` are set for typed tensors (module outputs kept on the device) and
    ("uint8", (nbytes,)) for raw `malloc` buffers.
    """

    id: int
    nbytes: int
    dtype: str
    shape: tuple[int, ...]
    session: str

    @classmethod
    def from_info(cls, info: pb.BufferInfo, session: str) -> DeviceBuffer:
        return cls(info.id, info.nbytes, info.dtype, tuple(info.shape), session)


class RemoteModule:
    """A module registered on the backend; call it like the module (inputs at the registered shapes)."""

    def __init__(self, device: DeviceSession, cap: CapturedGraph) -> None:
        self.device = device
        self.content_hash = cap.content_hash
        self.input_specs: list[Spec] = cap.input_specs
        self.output_specs: list[Spec] = cap.output_specs
        self._capture = cap              # kept to re-register after a reconnect
        self.module_id = 0
        self.generation = 0
        self.uploaded = False            # whether the last registration sent the weights

    def ensure_registered(self) -> None:
        if self.generation != self.device.generation:
            self.module_id, self.uploaded = self.device._register(self._capture)
            self.generation = self.device.generation

    def _checked(self, inputs: Sequence[Any]) -> list[DeviceBuffer | torch.Tensor]:
        """The inputs checked against the registered specs: this session's handles, or host CPU tensors."""
        if len(inputs) != len(self.input_specs):
            raise InvalidRequest(f"module takes {len(self.input_specs)} inputs, got {len(inputs)}")
        out: list[DeviceBuffer | torch.Tensor] = []
        for k, (x, spec) in enumerate(zip(inputs, self.input_specs, strict=True)):
            if isinstance(x, DeviceBuffer):
                if x.session != self.device.session_id:
                    raise InvalidRequest(f"input {k} is a handle of another session; handles live in one session")
                out.append(x)
                continue
            t = as_tensor(x, f"input {k}")
            got = Spec(dtype_name(t.dtype), tuple(t.shape))
            if got != spec:
                raise InvalidRequest(f"input {k}: expected {spec.dtype} {list(spec.shape)}, got {got.dtype} "
                                     f"{list(got.shape)}; register the module again for other shapes")
            out.append(t)
        return out

    def _inputs(self, checked: list[DeviceBuffer | torch.Tensor]) -> list[pb.LaunchInput]:
        """Checked inputs as gRPC launch inputs (host tensors inline, within the message limit)."""
        out, total = [], 0
        for x in checked:
            if isinstance(x, DeviceBuffer):
                out.append(pb.LaunchInput(handle=x.id))
            else:
                total += x.numel() * x.element_size()
                out.append(pb.LaunchInput(host=to_wire(x)))
        if total + LAUNCH_HEADROOM_BYTES > self.device.max_message_bytes:
            raise InvalidRequest(f"inline inputs total {total} bytes, over the {self.device.max_message_bytes}-byte "
                                 "message limit; upload them with memcpy_htod and pass handles")
        return out

    def _keep_flags(self, keep_on_device: bool | Sequence[bool]) -> list[bool]:
        """One keep flag per tensor output (output_specs order) from a bool or a per-output sequence."""
        n = len(self.output_specs)
        if isinstance(keep_on_device, bool):
            return [keep_on_device] * n
        flags = list(keep_on_device)
        if len(flags) != n or not all(isinstance(f, bool) for f in flags):
            raise InvalidRequest(f"keep_on_device must be a bool or {n} bools (one per tensor output), got "
                                 f"{str(keep_on_device)[:80]}")
        return flags

    def __call__(self, *inputs: Any, keep_on_device: bool | Sequence[bool] = False,
                 free_after: Sequence[DeviceBuffer] = ()) -> Any:
        """Launch on host arrays / tensors or DeviceBuffers.

        Returns the module's output structure with host torch tensors, or DeviceBuffers where
        `keep_on_device` says so: True keeps every output on the device (chain them into the next launch
        without a round trip of the data); a sequence of bools, one per tensor output in order, keeps
        some and brings the others back in the same reply.
        `free_after`: this session's buffers to free once the launch has run, whether it succeeded or not
        (typically inputs this launch reads last): no round trip of their own on the data channel, where
        nothing runs if one of them is not the session's (InvalidHandle names it). Over the gRPC fallback
        they are freed by one more call after the launch.
        """
        self.ensure_registered()
        checked = self._checked(inputs)
        keep = self._keep_flags(keep_on_device)
        free = [_handle_id(h, "free_after", self.device.session_id) for h in free_after]
        what, sid, data = f"launch module {self.content_hash[:19]}", self.device.session_id, self.device._conn.data
        if data is not None:   # the data channel: host inputs as raw bytes, handles by id (op K)
            refs = [x.id if isinstance(x, DeviceBuffer) else host_bytes(x) for x in checked]
            got = data.launch(self.module_id, refs, keep, what, free)
            return self._capture.assemble([DeviceBuffer(g[0], g[1], g[2], g[3], sid) if isinstance(g, tuple) else g
                                           for g in got])
        try:
            out = self._launch_grpc(checked, keep, what)
        except BaseException:
            if free_after:
                with contextlib.suppress(GvirtusError):   # the launch's own error is the one to report
                    self.device.free_many(list(free_after))
            raise
        if free_after:   # over gRPC: one more round trip, and ownership is checked only now
            self.device.free_many(list(free_after))
        return out

    def _launch_grpc(self, checked: list[DeviceBuffer | torch.Tensor], keep: list[bool], what: str) -> Any:
        """The gRPC Launch fallback (no data channel): keeps all outputs or none, so a mixed keep reads back."""
        sid = self.device.session_id
        request = pb.LaunchRequest(module_id=self.module_id, inputs=self._inputs(checked),
                                   keep_on_device=any(keep))
        reply = self.device._call("Launch", request, what)
        leaves: list[Any] = [DeviceBuffer.from_info(o.device, sid) if o.WhichOneof("dest") == "device"
                             else from_wire(o.host) for o in reply.outputs]
        if any(keep) and not all(keep):  # the Launch RPC keeps all or none: read back the others, then free them
            back = [k for k, flag in enumerate(keep) if not flag]
            buffers = [leaves[k] for k in back]
            for k in back:
                leaves[k] = torch.from_numpy(self.device.memcpy_dtoh(leaves[k]))
            self.device.free_many(buffers)
        return self._capture.assemble(leaves)

    def unregister(self) -> None:
        """Drop this session's reference; the backend frees the weights when no session uses them."""
        if self.generation == self.device.generation and self.module_id:
            self.device._call("UnregisterModule", pb.Handle(id=self.module_id), "unregister module")
            self.generation = 0


def _handle_id(h: Any, what: str, session: str) -> int:
    if not isinstance(h, DeviceBuffer):
        raise InvalidRequest(f"{what} takes DeviceBuffers, got {type(h).__name__}")
    if h.session != session:
        raise InvalidRequest(f"{what}: a handle of another session; handles live in one session")
    return h.id


def host_bytes(data: np.ndarray | torch.Tensor) -> memoryview:
    """A host array's bytes in C order, as sent by copies and launches."""
    t = as_tensor(data, "memcpy_htod data").contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().data


def module_chunks(cap: CapturedGraph, size: int) -> Iterator[pb.ModuleChunk]:
    """A captured module as RegisterModule chunks: the header, then the weights' bytes in `size` pieces."""
    header = pb.ModuleHeader(content_hash=cap.content_hash, graph_json=cap.graph_json)
    for w in cap.weights:
        header.weights.add(dtype=dtype_name(w.dtype), shape=w.shape)
    for s in cap.input_specs:
        header.inputs.add(dtype=s.dtype, shape=s.shape)
    yield pb.ModuleChunk(header=header)
    pending = bytearray()
    for w in cap.weights:
        if not w.numel():
            continue
        view = w.contiguous().reshape(-1).view(torch.uint8).numpy().data
        pos = 0
        while pos < view.nbytes:
            take = min(size - len(pending), view.nbytes - pos)
            pending += view[pos:pos + take]
            pos += take
            if len(pending) >= size:
                yield pb.ModuleChunk(weight_data=bytes(pending))
                pending = bytearray()
    if pending:
        yield pb.ModuleChunk(weight_data=bytes(pending))
