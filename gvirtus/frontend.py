"""The client API node 1 uses: a RemoteDevice (runtime layer; its modules: gvirtus.modules).

    dev = gvirtus.connect("127.0.0.1:8888", token=...)
    h = dev.malloc(4096); dev.memcpy_htod(h, array); back = dev.memcpy_dtoh(h, np.float32, (1024,))
    mod = dev.register_module(net, [example])      # identical content again: no upload
    out = mod(image)                               # host torch tensors, in the module's output structure
    dev.close()

Every method raises `gvirtus.errors` types; a lost backend raises RemoteDeviceLost (never exits).
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from gvirtus.client import Connection
from gvirtus.datachannel import MAX_FREE_BATCH
from gvirtus.errors import InvalidRequest, RemoteDeviceLost, each_then_raise
from gvirtus.graph import CapturedGraph, as_tensor, capture
from gvirtus.modules import DeviceBuffer, RemoteModule, host_bytes, module_chunks
from gvirtus.proto import gvirtus_pb2 as pb
from gvirtus.protocol import (
    CALL_TIMEOUT_S,
    DEFAULT_MAX_MESSAGE_MB,
    chunk_bytes,
    dtype_name,
)


class RemoteDevice:
    """One session on a gvirtus backend. Thread-safe for concurrent calls."""

    def __init__(self, target: str, token: str | None = None, *, secure: bool = False,
                 root_cert: bytes | str | None = None, timeout_s: float = CALL_TIMEOUT_S,
                 max_message_mb: int = DEFAULT_MAX_MESSAGE_MB, client_name: str = "") -> None:
        if isinstance(root_cert, str):
            with open(root_cert, "rb") as f:
                root_cert = f.read()
        self._target, self._token = target, token
        self._options: dict[str, Any] = {"secure": secure, "root_cert": root_cert, "timeout_s": timeout_s,
                                         "max_message_mb": max_message_mb, "client_name": client_name}
        self._lock = threading.Lock()
        self._conn = Connection(target, token, **self._options)
        self._generation = itertools.count(1)
        self.generation = next(self._generation)
        self._modules: dict[str, RemoteModule] = {}
        self._op_stream: Any = None

    # session ------------------------------------------------------------------------
    @property
    def target(self) -> str:
        return self._conn.target

    @property
    def session_id(self) -> str:
        return self._conn.session_id

    @property
    def max_message_bytes(self) -> int:
        return self._conn.max_message_bytes

    @property
    def closed(self) -> bool:
        return self._conn.closed

    def _call(self, method_name: str, request: Any, what: str, timeout_s: float | None = None) -> Any:
        return self._conn.call(getattr(self._conn.stub, method_name), request, what, timeout_s)

    def reconnect(self) -> RemoteDevice:
        """Open a new session on a new channel (after RemoteDeviceLost). Old handles are gone;
        registered modules re-register themselves on their next call."""
        with self._lock:
            self._close_op_stream()
            self._conn.close()
            self._conn = Connection(self._target, self._token, **self._options)
            self.generation = next(self._generation)
        return self

    def close(self) -> None:
        """Close the session: the backend frees every handle and module reference of it."""
        with self._lock:
            self._close_op_stream()
            self._conn.close()

    def _close_op_stream(self) -> None:
        if self._op_stream is not None:
            self._op_stream.close()
            self._op_stream = None

    def __enter__(self) -> RemoteDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> None:
        """A null call: one round trip through the backend's session check, on the data channel that
        copies and host-input launches use (gRPC when there is none). The latency floor of those calls."""
        data = self._conn.data
        if data is None or self._conn.closed:
            self.ping_grpc()
        else:
            data.ping()

    def ping_grpc(self) -> None:
        """A null call as a unary gRPC call (the floor of malloc, free, memset, register, ...)."""
        self._conn.call(self._conn.stub.Ping, _EMPTY, "ping")

    def ping_stream(self) -> None:
        """A null call on the session's op stream (opened on first use): an empty synchronising call."""
        self.op_stream().sync()

    def properties(self) -> dict[str, Any]:
        """name, device_type ("cpu"/"cuda"), device, total_memory / free_memory (bytes), capability,
        torch_version, multiprocessors, session_bytes_in_use, session_quota_bytes."""
        p = self._call("Properties", _EMPTY, "properties")
        return {f.name: getattr(p, f.name) for f in p.DESCRIPTOR.fields}

    def stats(self) -> dict[str, int]:
        """Backend-wide counters: sessions, session_bytes, modules, module_bytes, device_allocated."""
        s = self._call("Stats", _EMPTY, "stats")
        return {f.name: int(getattr(s, f.name)) for f in s.DESCRIPTOR.fields}

    # runtime --------------------------------------------------------------------------
    def malloc(self, nbytes: int) -> DeviceBuffer:
        """Allocate `nbytes` (uninitialised) on the device; counts against the session quota."""
        if not isinstance(nbytes, int) or nbytes < 0:
            raise InvalidRequest(f"malloc size must be a non-negative int, got {nbytes!r}")
        data = self._conn.data
        if data is not None and not self._conn.closed:
            return DeviceBuffer(data.malloc(nbytes), nbytes, "uint8", (nbytes,), self.session_id)
        info = self._call("Malloc", pb.MallocRequest(nbytes=nbytes), f"malloc({nbytes})")
        return DeviceBuffer.from_info(info, self.session_id)

    def free(self, handle: DeviceBuffer) -> None:
        data = self._conn.data
        if data is not None and not self._conn.closed:
            data.free(_hid(handle))
        else:
            self._call("Free", pb.Handle(id=_hid(handle)), f"free({_hid(handle)})")

    def free_many(self, handles: Sequence[DeviceBuffer]) -> None:
        """Free several buffers: one round trip on the data channel (a pose step frees 7), else one Free
        RPC each. Every handle is tried; the error (InvalidHandle) names the first that was not freed."""
        ids = [_hid(h) for h in handles]
        data = self._conn.data
        if data is not None and not self._conn.closed:
            for start in range(0, len(ids), MAX_FREE_BATCH):
                data.free_many(ids[start:start + MAX_FREE_BATCH])
            return
        each_then_raise(self.free, handles)

    def memcpy_htod(self, handle: DeviceBuffer, data: np.ndarray | torch.Tensor, offset: int = 0) -> None:
        """Copy a host array's bytes (C order) into the buffer at byte `offset`."""
        buf = host_bytes(data)
        size = chunk_bytes(self.max_message_bytes)
        what = f"memcpy_htod({_hid(handle)}, {buf.nbytes} bytes)"
        if self._conn.data is not None and not self._conn.closed:
            self._conn.data.write(_hid(handle), offset, buf, what)
        elif buf.nbytes <= size:
            self._call("Write", pb.CopyChunk(handle=_hid(handle), offset=offset, data=bytes(buf)), what)
        else:
            self._call("MemcpyHtoD", _chunks(_hid(handle), offset, buf, size), what)

    def memcpy_dtoh(self, handle: DeviceBuffer, dtype: Any = None, shape: Sequence[int] | None = None,
                    offset: int = 0) -> np.ndarray:
        """Read prod(shape) elements of `dtype` from byte `offset`; default the handle's own dtype/shape.

        Returns a new host np.ndarray (numpy has no bfloat16: read such data as uint16 or float32)."""
        name = dtype_name(dtype) if dtype is not None else handle.dtype
        if name == "bfloat16":
            raise InvalidRequest("memcpy_dtoh cannot return bfloat16 (numpy has no such dtype); read it as "
                                 "int16, or convert it on the device first")
        dims = tuple(int(s) for s in (shape if shape is not None else handle.shape))
        itemsize = torch.empty((), dtype=_torch_dtype(name)).element_size()
        nbytes = math.prod(dims) * itemsize
        req = pb.ReadRequest(handle=_hid(handle), offset=offset, nbytes=nbytes)
        what = f"memcpy_dtoh({_hid(handle)}, {nbytes} bytes)"
        out = np.empty(nbytes, dtype=np.uint8)     # not zero-filled: every byte is overwritten
        pos = 0
        if self._conn.data is not None and not self._conn.closed:
            self._conn.data.read_into(_hid(handle), offset, out.data, what)
            pos = nbytes
        elif nbytes <= chunk_bytes(self.max_message_bytes):
            out[:] = np.frombuffer(self._call("Read", req, what).data, dtype=np.uint8)
            pos = len(out)
        else:
            for chunk in self._conn.stream(self._conn.stub.MemcpyDtoH, req, what):
                out[pos:pos + len(chunk.data)] = np.frombuffer(chunk.data, dtype=np.uint8)
                pos += len(chunk.data)
        if pos != nbytes:
            raise InvalidRequest(f"memcpy_dtoh: the backend sent {pos} bytes, expected {nbytes}")
        return out.view(np.dtype(name)).reshape(dims)

    def memcpy_dtod(self, dst: DeviceBuffer, src: DeviceBuffer, nbytes: int = 0, dst_offset: int = 0,
                    src_offset: int = 0) -> None:
        """Copy `nbytes` (0: as many as fit) between two buffers of this session, on the device."""
        self._call("MemcpyDtoD", pb.DtoDRequest(dst=_hid(dst), src=_hid(src), nbytes=nbytes, dst_offset=dst_offset,
                                                src_offset=src_offset), "memcpy_dtod")

    def memset(self, handle: DeviceBuffer, value: int, nbytes: int = 0, offset: int = 0) -> None:
        """Set `nbytes` (0: to the end) bytes from `offset` to the byte `value`."""
        self._call("Memset", pb.MemsetRequest(handle=_hid(handle), value=value, offset=offset, nbytes=nbytes),
                   "memset")

    def synchronize(self) -> None:
        """Wait for all queued work; raises the first pending error of the transparent layer."""
        if self._op_stream is not None and self._op_stream.generation == self.generation:
            self._op_stream.sync()          # the backend synchronises its device as part of a stream sync
        else:
            self._call("Synchronize", _EMPTY, "synchronize")

    # modules --------------------------------------------------------------------------
    def register_module(self, module: torch.nn.Module, example_inputs: Sequence[Any]) -> RemoteModule:
        """Capture `module` at the example inputs' shapes and register it; identical content is not re-sent.

        Args:
            module: an nn.Module (eval mode for inference); its forward takes tensors only.
            example_inputs: np.ndarray / torch.Tensor; every launch must use these shapes and dtypes.
        """
        cap = capture(module, example_inputs)
        with self._lock:
            known = self._modules.get(cap.content_hash)
        if known is not None and known.generation == self.generation:
            known.uploaded = False       # this registration sent nothing
            return known
        rm = RemoteModule(self, cap)
        rm.ensure_registered()
        with self._lock:
            self._modules[cap.content_hash] = rm
        return rm

    def _register(self, cap: CapturedGraph) -> tuple[int, bool]:
        """(module id, uploaded?) for a captured graph: looked up by content hash first."""
        found = self._call("LookupModule", pb.LookupRequest(content_hash=cap.content_hash), "lookup module")
        if found.found:
            return found.module_id, False
        chunks = module_chunks(cap, chunk_bytes(self.max_message_bytes))
        info = self._call("RegisterModule", chunks, f"register module {cap.content_hash[:19]}")
        return info.module_id, True

    # transparent ----------------------------------------------------------------------
    def op_stream(self) -> Any:
        """The transparent layer's op stream of this session (opened on first use)."""
        from gvirtus.opstream import OpStream

        if self._conn.closed:
            raise RemoteDeviceLost("this RemoteDevice is closed; open a new one with gvirtus.connect")
        with self._lock:
            if self._op_stream is None or self._op_stream.generation != self.generation:
                self._op_stream = OpStream(self._conn, self.generation)
            return self._op_stream

    def tensor(self, data: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Upload a host array as a RemoteTensor for the transparent layer."""
        from gvirtus.transparent import upload

        return upload(self, as_tensor(data, "tensor data"))

    def to_remote(self, module: torch.nn.Module) -> torch.nn.Module:
        """Move `module`'s parameters and buffers to this device (in place); unmodified forward code
        then runs op by op on the backend. Returns the module."""
        from gvirtus.transparent import module_to_remote

        return module_to_remote(module, self)


_EMPTY = pb.Empty()


def _hid(handle: DeviceBuffer) -> int:
    if not isinstance(handle, DeviceBuffer):
        raise InvalidRequest(f"expected a DeviceBuffer handle, got {type(handle).__name__}")
    return handle.id


def _torch_dtype(name: str) -> torch.dtype:
    from gvirtus.protocol import torch_dtype

    return torch_dtype(name)


def _chunks(hid: int, offset: int, buf: memoryview, size: int) -> Iterator[pb.CopyChunk]:
    yield pb.CopyChunk(handle=hid, offset=offset, data=bytes(buf[:size]))
    for a in range(size, buf.nbytes, size):
        yield pb.CopyChunk(data=bytes(buf[a:a + size]))
