"""The client's connection: channel, session, heartbeats, and gRPC errors translated to gvirtus errors.

Every remote call a RemoteDevice makes (a unary or streaming RPC, or one request on the bulk-copy
data channel) is counted here, where it is made: `calls_made()` is the process total and
`calls_made_by_this_thread()` the calling thread's (node 1's runner reads its delta around one
try-on's preprocessing, so a concurrent health probe is not billed to the try-on). Heartbeats and
opening/closing the session are not calls on the device and are not counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc

from gvirtus.datachannel import DataClient
from gvirtus.errors import (
    AuthenticationFailed,
    GvirtusError,
    InvalidRequest,
    RemoteDeviceLost,
    RemoteExecutionError,
    SessionLost,
    error_class,
)
from gvirtus.proto import gvirtus_pb2 as pb
from gvirtus.proto import gvirtus_pb2_grpc as pb_grpc
from gvirtus.protocol import (
    CONNECT_TIMEOUT_S,
    ERROR_METADATA_KEY,
    HEARTBEAT_TIMEOUT_S,
    MIB,
    PROTOCOL_VERSION,
    SESSION_METADATA_KEY,
    channel_options,
)

log = logging.getLogger("gvirtus.frontend")
T = TypeVar("T")
RECONNECT_BACKOFF_INITIAL_MS = 200
RECONNECT_BACKOFF_MAX_MS = 2000



class _CallCounter:
    """Remote calls counted per process and per thread (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0
        self._local = threading.local()

    def add(self) -> None:
        with self._lock:
            self._total += 1
        self._local.n = getattr(self._local, "n", 0) + 1

    @property
    def total(self) -> int:
        with self._lock:
            return self._total

    @property
    def this_thread(self) -> int:
        return int(getattr(self._local, "n", 0))


_CALLS = _CallCounter()


def calls_made() -> int:
    """Remote calls (RPCs and data-channel requests) made by this process's gvirtus clients so far."""
    return _CALLS.total


def calls_made_by_this_thread() -> int:
    """Remote calls made so far from the calling thread."""
    return _CALLS.this_thread


class CountingDataClient(DataClient):
    """The bulk-copy data channel, each request counted as one remote call."""

    def _guard(self, what: str, fn: Any) -> Any:
        _CALLS.add()
        return super()._guard(what, fn)


_BY_STATUS: dict[grpc.StatusCode, type[GvirtusError]] = {
    grpc.StatusCode.UNAVAILABLE: RemoteDeviceLost,
    grpc.StatusCode.CANCELLED: RemoteDeviceLost,
    grpc.StatusCode.DEADLINE_EXCEEDED: RemoteDeviceLost,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationFailed,
    grpc.StatusCode.RESOURCE_EXHAUSTED: InvalidRequest,   # gRPC's own "message larger than max"
    grpc.StatusCode.FAILED_PRECONDITION: SessionLost,
}


def translate_rpc_error(exc: grpc.RpcError, target: str, what: str) -> GvirtusError:
    """A gRPC failure as a typed gvirtus error (backend errors keep their class)."""
    call: Any = exc
    code = call.code() if hasattr(call, "code") else grpc.StatusCode.UNKNOWN
    details = call.details() if hasattr(call, "details") else str(exc)
    trailing = dict(call.trailing_metadata() or ()) if hasattr(call, "trailing_metadata") else {}
    name = trailing.get(ERROR_METADATA_KEY)
    if name:
        return error_class(str(name))(details)
    cls = _BY_STATUS.get(code, RemoteExecutionError)
    if cls is RemoteDeviceLost:
        return RemoteDeviceLost(f"{what}: lost the gvirtus backend at {target} ({code.name}: {details}); "
                                "open a new session (RemoteDevice.reconnect or gvirtus.connect)")
    return cls(f"{what}: {code.name}: {details}")


class Connection:
    """One channel and one session on it, with a heartbeat thread."""

    def __init__(self, target: str, token: str | None, *, secure: bool, root_cert: bytes | None,
                 timeout_s: float, max_message_mb: int, client_name: str) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.max_message_bytes = max_message_mb * MIB
        options = [*channel_options(self.max_message_bytes),
                   ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_INITIAL_MS),
                   ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
                   ("grpc.enable_retries", 0),
                   # The backend binds a session to the connection that opened it; without a private
                   # subchannel pool, channels with equal arguments in one process share one connection.
                   ("grpc.use_local_subchannel_pool", 1)]
        if secure:
            creds = grpc.ssl_channel_credentials(root_certificates=root_cert)
            self.channel = grpc.secure_channel(target, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.stub = pb_grpc.GvirtusStub(self.channel)
        try:
            grpc.channel_ready_future(self.channel).result(timeout=min(timeout_s, CONNECT_TIMEOUT_S))
        except grpc.FutureTimeoutError:
            self.channel.close()
            raise RemoteDeviceLost(f"cannot reach the gvirtus backend at {target} within "
                                   f"{min(timeout_s, CONNECT_TIMEOUT_S):.1f} s; is `python -m gvirtus.backend` "
                                   "running there (node2.host / node2.gvirtus_port)?") from None
        self.metadata: tuple[tuple[str, str], ...] = ()
        try:
            reply = self.stub.OpenSession(pb.OpenRequest(token=token or "", protocol_version=PROTOCOL_VERSION,
                                                         client=client_name), timeout=timeout_s)
        except grpc.RpcError as exc:
            self.channel.close()
            raise translate_rpc_error(exc, target, "open session") from None
        self.open_reply = reply
        self.session_id = reply.session_id
        self.metadata = ((SESSION_METADATA_KEY, reply.session_id),)
        self.max_message_bytes = min(self.max_message_bytes, reply.max_message_bytes or self.max_message_bytes)
        self.closed = False
        self.data: DataClient | None = None
        if reply.data_port:
            host = target.rsplit(":", 1)[0].strip("[]")
            try:
                self.data = CountingDataClient(host, reply.data_port, reply.session_id, timeout_s=timeout_s,
                                       root_cert=root_cert, secure=secure)
            except (OSError, GvirtusError) as exc:   # e.g. a firewall: copies fall back to gRPC
                log.warning("bulk-copy data channel %s:%d unavailable (%s); copies use gRPC", host,
                            reply.data_port, exc)
        self.heartbeat_error: GvirtusError | None = None
        self._stop = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, args=(reply.heartbeat_interval_s,),
                                           name="gvirtus-heartbeat", daemon=True)
        self._heartbeat.start()

    def _beat(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.stub.Heartbeat(pb.Empty(), metadata=self.metadata, timeout=HEARTBEAT_TIMEOUT_S)
                self.heartbeat_error = None
            except grpc.RpcError as exc:
                self.heartbeat_error = translate_rpc_error(exc, self.target, "heartbeat")
                if isinstance(self.heartbeat_error, SessionLost):
                    log.warning("gvirtus session lost: %s", self.heartbeat_error)
                    return

    def call(self, method: Callable[..., T], request: Any, what: str, timeout_s: float | None = None) -> T:
        """Invoke a unary (or client-streaming) RPC with the session metadata; errors come back typed."""
        if self.closed:
            raise RemoteDeviceLost(f"{what}: this RemoteDevice is closed; open a new one with gvirtus.connect")
        _CALLS.add()
        try:
            return method(request, metadata=self.metadata, timeout=timeout_s or self.timeout_s)
        except grpc.RpcError as exc:
            raise translate_rpc_error(exc, self.target, what) from None

    def stream(self, method: Callable[..., Iterator[T]], request: Any, what: str) -> Iterator[T]:
        """Iterate a server-streaming RPC; errors come back typed."""
        if self.closed:
            raise RemoteDeviceLost(f"{what}: this RemoteDevice is closed")
        _CALLS.add()
        try:
            yield from method(request, metadata=self.metadata, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise translate_rpc_error(exc, self.target, what) from None

    def close(self) -> None:
        if self.closed:
            return
        self._stop.set()
        if self.data is not None:
            self.data.close()
        try:
            self.stub.CloseSession(pb.Empty(), metadata=self.metadata, timeout=HEARTBEAT_TIMEOUT_S)
        except grpc.RpcError:
            pass   # the backend frees the session anyway once heartbeats stop
        self.closed = True
        self.channel.close()


def wait_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    """Poll `predicate` until it holds or `timeout_s` passes (for tests and the testing helper)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()
