"""The gRPC servicer: every RPC of gvirtus.proto, validated at the boundary, errors sent typed.

`build_server(...)` assembles a ready-to-start `grpc.Server`; `gvirtus.backend` is the process
around it. Every error leaves as a gRPC status plus the `gvirtus-error` trailing metadata naming
the `gvirtus.errors` class; an unexpected exception becomes RemoteExecutionError and the backend
keeps serving.
"""

from __future__ import annotations

import functools
import hmac
import logging
import warnings
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any, TypeVar

import grpc
import numpy as np
import torch

from gvirtus.boundary import byte_view, check_input, check_range, handle_input, keep_outputs
from gvirtus.device import device_properties, synchronize
from gvirtus.errors import (
    AuthenticationFailed,
    GvirtusError,
    InvalidHandle,
    InvalidRequest,
    OpNotAllowed,
    QuotaExceeded,
    RemoteDeviceLost,
    SessionLost,
    SessionNotOwned,
)
from gvirtus.executor import OpExecutor, translate
from gvirtus.graph import CompiledGraph, Spec, content_hash
from gvirtus.proto import gvirtus_pb2 as pb
from gvirtus.proto import gvirtus_pb2_grpc as pb_grpc
from gvirtus.protocol import (
    ERROR_METADATA_KEY,
    HEARTBEATS_PER_TIMEOUT,
    PROTOCOL_VERSION,
    SERVER_WORKERS,
    SESSION_METADATA_KEY,
    bytes_to_tensor,
    channel_options,
    chunk_bytes,
    from_wire,
    nbytes_of,
    to_wire,
    torch_dtype,
)
from gvirtus.sessions import Session, SessionStore

log = logging.getLogger("gvirtus.backend")
# Chunks arrive as immutable bytes; torch warns when wrapping them, but they are only read from.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

STATUS = (  # most specific first
    (SessionNotOwned, grpc.StatusCode.PERMISSION_DENIED),
    (SessionLost, grpc.StatusCode.FAILED_PRECONDITION),
    (RemoteDeviceLost, grpc.StatusCode.UNAVAILABLE),
    (AuthenticationFailed, grpc.StatusCode.UNAUTHENTICATED),
    (QuotaExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (OpNotAllowed, grpc.StatusCode.PERMISSION_DENIED),
    (InvalidHandle, grpc.StatusCode.NOT_FOUND),
    (InvalidRequest, grpc.StatusCode.INVALID_ARGUMENT),
    (GvirtusError, grpc.StatusCode.INTERNAL),
)
F = TypeVar("F", bound=Callable[..., Any])


def status_of(err: GvirtusError) -> grpc.StatusCode:
    return next(code for cls, code in STATUS if isinstance(err, cls))


def _abort(context: grpc.ServicerContext, exc: BaseException) -> None:
    err = translate(exc)
    context.set_trailing_metadata(((ERROR_METADATA_KEY, type(err).__name__),))
    context.abort(status_of(err), str(err)[:4000])


def unary(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except Exception as exc:
            _abort(context, exc)
    return wrapper  # type: ignore[return-value]


def streaming(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from fn(self, request, context)
        except Exception as exc:
            _abort(context, exc)
    return wrapper  # type: ignore[return-value]


class Servicer(pb_grpc.GvirtusServicer):
    """The backend's RPCs over one torch device and one SessionStore."""

    def __init__(self, store: SessionStore, device: torch.device, token: str | None, max_message_bytes: int,
                 data_port: int = 0) -> None:
        self.store = store
        self.data_port = data_port
        self.device = device
        self.token = token
        self.max_message_bytes = max_message_bytes
        self.executor = OpExecutor(device)

    def _session(self, context: grpc.ServicerContext) -> Session:
        """The call's session, if the call came on the connection that opened it (SessionNotOwned if not)."""
        for key, value in context.invocation_metadata():
            if key == SESSION_METADATA_KEY:
                return self.store.get(str(value), context.peer())
        raise SessionLost("no session id in the call; open a session first (gvirtus.connect)")

    # session -----------------------------------------------------------------
    @unary
    def OpenSession(self, request: pb.OpenRequest, context: grpc.ServicerContext) -> pb.OpenReply:  # noqa: N802
        if request.protocol_version != PROTOCOL_VERSION:
            raise InvalidRequest(f"client speaks protocol {request.protocol_version}, backend {PROTOCOL_VERSION}; "
                                 "update the older side")
        if self.token is not None and not hmac.compare_digest(request.token.encode(), self.token.encode()):
            log.warning("rejected a session from %s: wrong token", context.peer())
            raise AuthenticationFailed("the backend rejected the token; node 1 and node 2 must share "
                                       "gvirtus.token_file (or VM_GVIRTUS_TOKEN)")
        s = self.store.open(request.client or context.peer(), context.peer())
        timeout = self.store.session_timeout_s
        return pb.OpenReply(session_id=s.id, heartbeat_interval_s=timeout / HEARTBEATS_PER_TIMEOUT,
                            session_timeout_s=timeout, properties=self._props(s),
                            max_message_bytes=self.max_message_bytes, protocol_version=PROTOCOL_VERSION,
                            data_port=self.data_port)

    @unary
    def CloseSession(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.Empty:  # noqa: N802
        self.store.close(self._session(context).id, "closed by the client")
        return pb.Empty()

    @unary
    def Heartbeat(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.Empty:  # noqa: N802
        self._session(context)
        return pb.Empty()

    Ping = Heartbeat

    def _props(self, s: Session) -> pb.DeviceProperties:
        p = device_properties(self.device)
        return pb.DeviceProperties(**p, session_bytes_in_use=s.bytes_in_use, session_quota_bytes=s.quota_bytes)

    @unary
    def Properties(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.DeviceProperties:  # noqa: N802
        return self._props(self._session(context))

    @unary
    def Stats(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.BackendStats:  # noqa: N802
        self._session(context)
        st = self.store.stats()
        allocated = (torch.cuda.memory_allocated(self.device) if self.device.type == "cuda"
                     else st["session_bytes"] + st["module_bytes"])
        return pb.BackendStats(**st, device_allocated=allocated)

    # runtime -----------------------------------------------------------------
    @unary
    def Malloc(self, request: pb.MallocRequest, context: grpc.ServicerContext) -> pb.BufferInfo:  # noqa: N802
        hid = self._session(context).allocate(request.nbytes, self.device)
        return pb.BufferInfo(id=hid, nbytes=request.nbytes, dtype="uint8", shape=[request.nbytes])

    @unary
    def Free(self, request: pb.Handle, context: grpc.ServicerContext) -> pb.Empty:  # noqa: N802
        self._session(context).release(request.id)
        return pb.Empty()

    @unary
    def MemcpyHtoD(  # noqa: N802
            self, request_iterator: Iterator[pb.CopyChunk], context: grpc.ServicerContext) -> pb.Empty:
        s = self._session(context)
        dst: torch.Tensor | None = None
        pos = 0
        for chunk in request_iterator:
            if dst is None:
                dst = byte_view(s.get(chunk.handle), f"handle {chunk.handle}")
                pos = chunk.offset
            n = len(chunk.data)
            check_range(pos, n, dst.numel(), f"memcpy_htod to handle {chunk.handle}")
            if n:
                dst[pos:pos + n].copy_(torch.from_numpy(np.frombuffer(chunk.data, dtype=np.uint8)))
            pos += n
        return pb.Empty()

    @unary
    def Write(self, request: pb.CopyChunk, context: grpc.ServicerContext) -> pb.Empty:  # noqa: N802
        return self.MemcpyHtoD.__wrapped__(self, iter((request,)), context)  # type: ignore[attr-defined]

    @unary
    def Read(self, request: pb.ReadRequest, context: grpc.ServicerContext) -> pb.DataChunk:  # noqa: N802
        s = self._session(context)
        src = byte_view(s.get(request.handle), f"handle {request.handle}")
        nbytes = request.nbytes or max(src.numel() - request.offset, 0)
        check_range(request.offset, nbytes, src.numel(), f"memcpy_dtoh from handle {request.handle}")
        if nbytes > chunk_bytes(self.max_message_bytes):
            raise InvalidRequest(f"Read of {nbytes} bytes exceeds one message; use MemcpyDtoH (streamed)")
        return pb.DataChunk(data=src[request.offset:request.offset + nbytes].cpu().numpy().tobytes())

    @streaming
    def MemcpyDtoH(  # noqa: N802
            self, request: pb.ReadRequest, context: grpc.ServicerContext) -> Iterator[pb.DataChunk]:
        s = self._session(context)
        src = byte_view(s.get(request.handle), f"handle {request.handle}")
        nbytes = request.nbytes or max(src.numel() - request.offset, 0)
        check_range(request.offset, nbytes, src.numel(), f"memcpy_dtoh from handle {request.handle}")
        host = src[request.offset:request.offset + nbytes].cpu().numpy()
        size = chunk_bytes(self.max_message_bytes)
        for a in range(0, nbytes, size):
            yield pb.DataChunk(data=host[a:a + size].tobytes())

    @unary
    def MemcpyDtoD(self, request: pb.DtoDRequest, context: grpc.ServicerContext) -> pb.Empty:  # noqa: N802
        s = self._session(context)
        dst = byte_view(s.get(request.dst), f"handle {request.dst}")
        src = byte_view(s.get(request.src), f"handle {request.src}")
        n = request.nbytes or max(min(dst.numel() - request.dst_offset, src.numel() - request.src_offset), 0)
        check_range(request.dst_offset, n, dst.numel(), f"memcpy_dtod to handle {request.dst}")
        check_range(request.src_offset, n, src.numel(), f"memcpy_dtod from handle {request.src}")
        source = src[request.src_offset:request.src_offset + n]
        if dst.untyped_storage().data_ptr() == src.untyped_storage().data_ptr():
            source = source.clone()          # overlapping ranges of one buffer: memmove semantics
        dst[request.dst_offset:request.dst_offset + n].copy_(source)
        return pb.Empty()

    @unary
    def Memset(self, request: pb.MemsetRequest, context: grpc.ServicerContext) -> pb.Empty:  # noqa: N802
        s = self._session(context)
        if request.value > 255:
            raise InvalidRequest(f"memset value {request.value} is not a byte (0..255)")
        dst = byte_view(s.get(request.handle), f"handle {request.handle}")
        n = request.nbytes or max(dst.numel() - request.offset, 0)
        check_range(request.offset, n, dst.numel(), f"memset of handle {request.handle}")
        dst[request.offset:request.offset + n].fill_(request.value)
        return pb.Empty()

    @unary
    def Synchronize(self, request: pb.Empty, context: grpc.ServicerContext) -> pb.Empty:  # noqa: N802
        self._session(context)
        synchronize(self.device)
        return pb.Empty()

    # modules -----------------------------------------------------------------
    @unary
    def LookupModule(self, request: pb.LookupRequest, context: grpc.ServicerContext) -> pb.ModuleInfo:  # noqa: N802
        m = self.store.attach_module(self._session(context), request.content_hash)
        return pb.ModuleInfo(found=m is not None, module_id=m.id if m else 0)

    @unary
    def RegisterModule(self, request_iterator: Iterator[pb.ModuleChunk],  # noqa: N802
                       context: grpc.ServicerContext) -> pb.ModuleInfo:
        s = self._session(context)
        header: pb.ModuleHeader | None = None
        buf = bytearray()
        total = 0
        for chunk in request_iterator:
            if chunk.WhichOneof("part") == "header":
                header = chunk.header
                specs = [Spec(w.dtype, tuple(w.shape)) for w in header.weights]
                total = sum(nbytes_of(w.dtype, w.shape) for w in specs)
                s.check_quota(total, f"module {header.content_hash[:19]}")
            elif header is None:
                raise InvalidRequest("RegisterModule: the first chunk must be the header")
            else:
                if len(buf) + len(chunk.weight_data) > total:
                    raise InvalidRequest(f"module weights exceed the {total} bytes their specs declare")
                buf += chunk.weight_data
        if header is None or len(buf) != total:
            raise InvalidRequest(f"module weights: got {len(buf)} bytes, the specs declare {total}")
        weights, pos = [], 0
        for w in header.weights:
            n = nbytes_of(w.dtype, w.shape)
            weights.append(bytes_to_tensor(memoryview(buf)[pos:pos + n], w.dtype, w.shape))
            pos += n
        del buf
        inputs = [Spec(i.dtype, tuple(i.shape)) for i in header.inputs]
        for spec in inputs:
            torch_dtype(spec.dtype)
        digest = content_hash(header.graph_json, weights, inputs)
        if digest != header.content_hash:
            raise InvalidRequest(f"module content hash mismatch: client said {header.content_hash}, "
                                 f"content is {digest}")
        graph = CompiledGraph(header.graph_json, [w.to(self.device) for w in weights], inputs, self.device)
        m = self.store.add_module(s, digest, graph, total)
        log.info("module %s registered: %d nodes (%d convolution chains lowered), %d weights, %d bytes",
                 digest[:19], len(graph.ops), graph.lowered, len(weights), total)
        return pb.ModuleInfo(found=True, module_id=m.id)

    @unary
    def UnregisterModule(self, request: pb.Handle, context: grpc.ServicerContext) -> pb.Empty:  # noqa: N802
        self.store.detach_module(self._session(context), request.id)
        return pb.Empty()

    def _launch_input(self, s: Session, k: int, item: pb.LaunchInput, spec: Spec) -> torch.Tensor:
        if item.WhichOneof("source") == "handle":
            return handle_input(s, k, item.handle, spec)
        return check_input(k, from_wire(item.host).to(self.device), spec)

    @unary
    def Launch(self, request: pb.LaunchRequest, context: grpc.ServicerContext) -> pb.LaunchReply:  # noqa: N802
        s = self._session(context)
        m = s.modules.get(request.module_id)
        if m is None:
            raise InvalidHandle(f"module {request.module_id} is not registered in this session")
        specs = m.graph.input_specs
        if len(request.inputs) != len(specs):
            raise InvalidRequest(f"module takes {len(specs)} inputs, got {len(request.inputs)}")
        inputs = [self._launch_input(s, k, item, spec)
                  for k, (item, spec) in enumerate(zip(request.inputs, specs, strict=True))]
        outs = m.graph.run(inputs)
        reply = pb.LaunchReply()
        if request.keep_on_device:
            for hid, nbytes, dtype, shape in keep_outputs(s, outs):
                reply.outputs.add(device=pb.BufferInfo(id=hid, nbytes=nbytes, dtype=dtype, shape=shape))
        else:
            for out in outs:
                reply.outputs.add(host=to_wire(out if isinstance(out, torch.Tensor) else torch.tensor(out)))
        return reply

    # transparent layer ----------------------------------------------------------
    @streaming
    def Pipeline(self, request_iterator: Iterator[pb.PipelineBatch],  # noqa: N802
                 context: grpc.ServicerContext) -> Iterator[pb.SyncReply]:
        s = self._session(context)
        yield from self.executor.run(s, request_iterator)


def build_server(store: SessionStore, device: torch.device, *, token: str | None, bind: str, port: int,
                 max_message_bytes: int, tls: tuple[bytes, bytes] | None = None,
                 data_port: int = 0) -> tuple[grpc.Server, int]:
    """A configured gRPC server (not started) and the port it bound (useful with port 0).

    Args:
        tls: (private key PEM, certificate chain PEM) for TLS; None for plaintext.
        data_port: the port of the bulk-copy stream (gvirtus.datachannel) announced to clients; 0 = none.
    Raises:
        RemoteDeviceLost: the address cannot be bound.
    """
    options = [*channel_options(max_message_bytes), ("grpc.so_reuseport", 0)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=SERVER_WORKERS, thread_name_prefix="gvirtus"),
                         options=options)
    pb_grpc.add_GvirtusServicer_to_server(Servicer(store, device, token, max_message_bytes, data_port), server)
    address = f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"
    try:
        bound = (server.add_secure_port(address, grpc.ssl_server_credentials([tls])) if tls
                 else server.add_insecure_port(address))
    except RuntimeError as exc:
        raise RemoteDeviceLost(f"cannot listen on {address}: {exc}") from exc
    if not bound:
        raise RemoteDeviceLost(f"cannot listen on {address} (port in use?); change node2.gvirtus_port")
    return server, bound
