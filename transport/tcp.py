"""TCP channel over pyzmq: client DEALER <-> server ROUTER, frames from `transport.frames`.

Wire: the DEALER sends `encode(frame)` parts (`copy=False`); the ROUTER receives
`[peer_identity, *parts]` and answers `[peer_identity, *encode(reply)]` with the same request id.

Each side owns its socket in one I/O thread (zmq sockets are not thread-safe); other threads
hand it work through a deque plus an eventfd the poller watches, so a reply from any thread is
sent without a polling delay. Liveness: the client sends a `ping` when idle for
HEARTBEAT_INTERVAL_S; a request with nothing heard from the peer for HEARTBEAT_TIMEOUT_S fails
with PeerUnavailable, and a dropped connection (peer restarted) fails the requests in flight at
once; zmq reconnects with capped backoff. Bounded: SNDHWM/RCVHWM, `max_in_flight` per client,
`max_outstanding` per server (it stops reading when its handler is that far behind).
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import threading
import time
from concurrent.futures import Future
from typing import Any

import zmq
import zmq.auth.thread
from zmq.utils.monitor import recv_monitor_message

from transport import curve as curve_mod
from transport.base import (
    DEFAULT_MAX_IN_FLIGHT,
    HEARTBEAT_ID_PREFIX,
    HEARTBEAT_INTERVAL_S,
    HEARTBEAT_KIND,
    HEARTBEAT_REPLY_KIND,
    HEARTBEAT_TIMEOUT_S,
    ChannelInfo,
    ChannelObserver,
    ClientChannel,
    Handler,
    InFlight,
    ServerChannel,
    closed_error,
    error_code,
)
from transport.errors import ChannelClosed, FrameError, FrameTooLarge, PeerUnavailable, RequestTimeout, TransportError
from transport.frames import (
    DEFAULT_MAX_BYTES,
    MAX_HEADER_BYTES,
    Frame,
    decode,
    decode_header,
    encode,
    error_frame,
    view,
)

DEFAULT_HWM = 32                  # messages queued per socket direction before pushing back
DEFAULT_MAX_OUTSTANDING = 256     # server: requests handed to the handler and not yet answered
RECONNECT_IVL_MS = 100            # zmq reconnect backoff: first retry ...
RECONNECT_IVL_MAX_MS = 1000       # ... doubling up to this cap
LOOP_TICK_S = 0.1                 # longest poll; bounds how late deadlines are noticed
REPLY_RETRY_MS = 1                 # server: retry interval for replies held back by a full peer queue
RECV_BATCH = 64                   # messages read per loop turn before sending replies again
MONITOR_EVENTS = (zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
                  | zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                  | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)

log = logging.getLogger("transport.tcp")


def _nbytes(parts: list[Any]) -> int:
    return sum(view(p).nbytes for p in parts)


def _drain_eventfd(fd: int) -> None:
    try:
        os.eventfd_read(fd)
    except BlockingIOError:
        pass


class TcpClient(ClientChannel):
    """DEALER side. `submit`/`request` are thread-safe; replies are matched by request id.

    Args:
        endpoint: "tcp://host:port" or "ipc:///path".
        max_message_bytes: replies larger than this are refused (FrameTooLarge).
        curve: client keys (`transport.curve.client_keys`) to encrypt and authenticate, or None.
        heartbeat_timeout_s: None disables the liveness deadline (for a peer that may be busy
            without answering pings, e.g. a single-threaded VITON service); disconnects still count.
    """

    def __init__(self, endpoint: str, *, max_message_bytes: int = DEFAULT_MAX_BYTES,
                 curve: curve_mod.CurveKeys | None = None, heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
                 heartbeat_timeout_s: float | None = HEARTBEAT_TIMEOUT_S, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 hwm: int = DEFAULT_HWM, reason: str = "") -> None:
        self.info = ChannelInfo("tcp", endpoint, reason)
        self._max_bytes = max_message_bytes
        self._curve = curve
        self._hb_interval = heartbeat_interval_s
        self._hb_timeout = heartbeat_timeout_s
        self._hwm = hwm
        self._inflight = InFlight(max_in_flight)
        self._outbox: collections.deque[tuple[str, list[Any]]] = collections.deque()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._closed = threading.Event()
        self._hb_ids = itertools.count()
        self._last_heard = time.monotonic()
        self._last_sent = 0.0
        self._problem = ""
        self.connected = False
        self._poller: zmq.Poller | None = None
        self._poll_flags = 0
        self._ctx = zmq.Context(io_threads=1)
        try:
            self._sock, self._monitor = self._open_socket()
        except zmq.ZMQError as exc:
            self._ctx.term()
            os.close(self._wake_fd)
            raise TransportError(f"cannot connect a zmq DEALER to {endpoint!r}: {exc}") from exc
        self._thread = threading.Thread(target=self._run, name=f"tcp-client {endpoint}", daemon=True)
        self._thread.start()

    # -- public ------------------------------------------------------------------------------
    def submit(self, frame: Frame, timeout_s: float) -> Future[Frame]:
        if self._closed.is_set():
            raise ChannelClosed(f"channel to {self.info.endpoint} is closed")
        parts: list[Any] = encode(frame)
        size = _nbytes(parts[1:])
        if size > self._max_bytes:
            raise FrameTooLarge(f"request {frame.request_id!r} carries {size} bytes; the limit is {self._max_bytes} "
                                "(transport.max_message_mb)")
        now = time.monotonic()
        fut = self._inflight.add(frame.request_id, now + timeout_s, now, timeout_s)
        self._outbox.append((frame.request_id, parts))
        os.eventfd_write(self._wake_fd, 1)
        if self._closed.is_set():  # raced with close(): the I/O thread may be gone
            self._inflight.fail_all(closed_error(self.info.endpoint))
        return fut

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        os.eventfd_write(self._wake_fd, 1)
        self._thread.join(timeout=5.0)
        self._inflight.fail_all(closed_error(self.info.endpoint))

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    # -- I/O thread --------------------------------------------------------------------------
    def _open_socket(self) -> tuple[zmq.Socket, zmq.Socket]:
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.sndhwm = self._hwm
        sock.rcvhwm = self._hwm
        sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
        sock.setsockopt(zmq.MAXMSGSIZE, self._max_bytes + MAX_HEADER_BYTES)
        if self._curve is not None:
            curve_mod.apply_client(sock, self._curve)
        monitor = sock.get_monitor_socket(MONITOR_EVENTS)
        try:
            sock.connect(self.info.endpoint)
        except zmq.ZMQError:
            sock.disable_monitor()
            monitor.close(linger=0)
            sock.close(linger=0)
            raise
        self.connected = False
        return sock, monitor

    def _reset_socket(self) -> None:
        self._close_socket()
        self._sock, self._monitor = self._open_socket()
        self._poller = None

    def _close_socket(self) -> None:
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self._monitor.close(linger=0)
        self._sock.close(linger=0)

    def _run(self) -> None:
        try:
            while not self._closed.is_set():
                self._turn()
        except Exception as exc:  # a bug here must not strand callers: fail them loudly
            log.exception("tcp client I/O thread for %s crashed", self.info.endpoint)
            crash = repr(exc)
            self._inflight.fail_all(lambda rid: TransportError(f"I/O thread crashed: {crash}"))
        finally:
            self._inflight.fail_all(closed_error(self.info.endpoint))
            self._close_socket()
            self._ctx.term()
            os.close(self._wake_fd)

    def _turn(self) -> None:
        flags = zmq.POLLIN | (zmq.POLLOUT if self._outbox else 0)
        if self._poller is None or self._poll_flags != flags:
            self._poller = zmq.Poller()
            self._poller.register(self._sock, flags)
            self._poller.register(self._monitor, zmq.POLLIN)
            self._poller.register(self._wake_fd, zmq.POLLIN)
            self._poll_flags = flags
        ready = dict(self._poller.poll(self._poll_timeout_ms()))
        if self._wake_fd in ready:
            _drain_eventfd(self._wake_fd)
        now = time.monotonic()
        if self._monitor in ready and self._on_monitor(now):
            return
        self._send_outbox(now)
        if ready.get(self._sock, 0) & zmq.POLLIN:
            self._receive(now)
        self._heartbeat(now)
        self._expire(now)

    def _poll_timeout_ms(self) -> int:
        deadline = self._inflight.next_deadline()
        now = time.monotonic()
        wait = min(LOOP_TICK_S, self._last_sent + self._hb_interval - now)
        if deadline is not None:
            wait = min(wait, deadline - now)
        return max(0, int(wait * 1000))

    def _send_outbox(self, now: float) -> None:
        while self._outbox:
            rid, parts = self._outbox[0]
            try:
                self._sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return  # HWM reached: the peer is slow; POLLOUT wakes us
            except zmq.ZMQError as exc:
                self._outbox.popleft()
                self._inflight.fail(rid, PeerUnavailable(f"send to {self.info.endpoint} failed: {exc}"))
                continue
            self._outbox.popleft()
            self._inflight.mark_sent(rid, now)
            self._last_sent = now

    def _receive(self, now: float) -> None:
        for _ in range(RECV_BATCH):
            try:
                parts: list[Any] = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._last_heard = now
            try:
                frame = decode(parts, self._max_bytes)
            except FrameError as exc:
                self._reject_reply(parts, exc)
                continue
            if frame.request_id.startswith(HEARTBEAT_ID_PREFIX):
                continue  # a pong (or a peer's error for a ping it does not know): liveness only
            if not self._inflight.resolve(frame.request_id, frame):
                log.info("late or unknown reply %r (%s) from %s dropped: its request already ended",
                         frame.request_id, frame.kind, self.info.endpoint)

    def _reject_reply(self, parts: list[Any], exc: FrameError) -> None:
        try:
            rid = decode_header(parts[0])["id"]
        except (FrameError, IndexError):
            log.warning("malformed reply from %s dropped: %s", self.info.endpoint, exc)
            return
        self._inflight.fail(rid, exc)

    def _on_monitor(self, now: float) -> bool:
        """Handle socket events; True if the socket was replaced."""
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return False
            kind = event["event"]
            if kind in (zmq.EVENT_CONNECTED, zmq.EVENT_HANDSHAKE_SUCCEEDED):
                self.connected = kind == zmq.EVENT_HANDSHAKE_SUCCEEDED or self._curve is None
                self._problem = ""
            elif kind & (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                         | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                self._problem = (" (CurveZMQ handshake failed: check transport.secure and the keys in "
                                 "transport.curve_key_dir on both nodes)")
            elif kind == zmq.EVENT_DISCONNECTED:
                self.connected = False
                lost = self._inflight.fail_all(lambda rid: PeerUnavailable(
                    f"connection to {self.info.endpoint} dropped with request {rid!r} in flight "
                    f"(the peer restarted or crashed){self._problem}; retry it"))
                if lost:
                    log.warning("connection to %s dropped: %d requests in flight failed", self.info.endpoint, lost)
                self._reset_socket()
                return True

    def _heartbeat(self, now: float) -> None:
        if now - self._last_sent < self._hb_interval:
            return
        ping = Frame(kind=HEARTBEAT_KIND, request_id=f"{HEARTBEAT_ID_PREFIX}{next(self._hb_ids)}")
        try:
            self._sock.send_multipart(list(encode(ping)), flags=zmq.NOBLOCK)  # type: ignore[arg-type]
        except zmq.ZMQError:
            pass  # queue full or no peer: liveness below decides
        self._last_sent = now

    def _expire(self, now: float) -> None:
        for rid in self._inflight.expired(now):
            self._inflight.fail(rid, RequestTimeout(
                f"no reply to request {rid!r} from {self.info.endpoint} before its deadline"))
        if self._hb_timeout is None:
            return
        silent = self._inflight.silent_since(now, self._last_heard, self._hb_timeout)
        for rid in silent:
            self._inflight.fail(rid, PeerUnavailable(
                f"{self.info.endpoint} did not answer for {self._hb_timeout:.1f}s (heartbeats missed) "
                f"with request {rid!r} in flight{self._problem}; is node 2 running and reachable?"))
        if silent:
            self._outbox.clear()
            self._reset_socket()


class TcpServer(ServerChannel):
    """ROUTER side: `handler(frame, reply)` runs on the I/O thread and must not block;
    `reply` may be called later from any thread. Answers `ping` and malformed frames itself."""

    def __init__(self, endpoint: str, handler: Handler, *, max_message_bytes: int = DEFAULT_MAX_BYTES,
                 curve: curve_mod.CurveKeys | None = None, observer: ChannelObserver | None = None,
                 hwm: int = DEFAULT_HWM, max_outstanding: int = DEFAULT_MAX_OUTSTANDING) -> None:
        self.info = ChannelInfo("tcp", endpoint)
        self._handler = handler
        self._max_bytes = max_message_bytes
        self._curve = curve
        self._obs = observer or ChannelObserver()
        self._hwm = hwm
        self._max_outstanding = max_outstanding
        self._outstanding = 0
        self._count_lock = threading.Lock()
        self._replies: collections.deque[tuple[bytes, Frame]] = collections.deque()
        self._wake_fd = -1
        self._closed = threading.Event()
        self._io_ident = -1
        self._thread: threading.Thread | None = None
        self._auth: zmq.auth.thread.ThreadAuthenticator | None = None
        self._poller: zmq.Poller | None = None
        self._poll_reading = False

    def start(self) -> str:
        self._ctx = zmq.Context(io_threads=1)
        sock = self._ctx.socket(zmq.ROUTER)
        sock.linger = 0
        sock.sndhwm = self._hwm
        sock.rcvhwm = self._hwm
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, self._max_bytes + MAX_HEADER_BYTES)
        if self._curve is not None:
            self._auth = zmq.auth.thread.ThreadAuthenticator(self._ctx, log=logging.getLogger("transport.auth"))
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(self._curve.authorized_dir))
            curve_mod.apply_server(sock, self._curve)
        try:
            sock.bind(self.info.endpoint)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            self._stop_ctx()
            raise TransportError(f"cannot listen on {self.info.endpoint}: {exc.strerror}; stop the process "
                                 "holding it or change the port in env_config.json") from exc
        self._sock = sock
        self.info.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name=f"tcp-server {self.info.endpoint}", daemon=True)
        self._thread.start()
        return self.info.endpoint

    def close(self) -> None:
        if self._thread is None or self._closed.is_set():
            return
        self._closed.set()
        os.eventfd_write(self._wake_fd, 1)
        self._thread.join(timeout=5.0)

    def _stop_ctx(self) -> None:
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()

    # -- I/O thread --------------------------------------------------------------------------
    def _run(self) -> None:
        self._io_ident = threading.get_ident()
        try:
            while not self._closed.is_set():
                self._turn()
        except Exception:
            log.exception("tcp server I/O thread on %s crashed", self.info.endpoint)
        finally:
            for _ in self._replies:
                self._obs.on_dropped_reply("server_closed")
            self._sock.close(linger=0)
            self._stop_ctx()
            os.close(self._wake_fd)

    def _turn(self) -> None:
        reading = self._outstanding < self._max_outstanding
        if self._poller is None or self._poll_reading != reading:
            self._poller = zmq.Poller()
            if reading:
                self._poller.register(self._sock, zmq.POLLIN)
            self._poller.register(self._wake_fd, zmq.POLLIN)
            self._poll_reading = reading
        ready = dict(self._poller.poll(REPLY_RETRY_MS if self._replies else int(LOOP_TICK_S * 1000)))
        if self._wake_fd in ready:
            _drain_eventfd(self._wake_fd)
        self._flush_replies()
        if self._sock in ready:
            for _ in range(RECV_BATCH):
                if self._outstanding >= self._max_outstanding:
                    break
                try:
                    parts = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._on_message(parts)
            self._flush_replies()

    def _on_message(self, parts: list[Any]) -> None:
        ident = parts[0].bytes
        body = parts[1:]
        self._obs.on_bytes("in", _nbytes(body[1:]))
        try:
            frame = decode(body, self._max_bytes)
        except FrameError as exc:
            code = error_code(exc)
            self._obs.on_malformed(code)
            rid = ""
            try:
                rid = decode_header(body[0])["id"] if body else ""
            except FrameError:
                pass
            log.warning("malformed frame %r rejected (%s): %s", rid, code, exc)
            self._send(ident, error_frame(rid, code, str(exc)))
            return
        if frame.kind == HEARTBEAT_KIND:
            self._send(ident, Frame(kind=HEARTBEAT_REPLY_KIND, request_id=frame.request_id))  # lost if full: fine
            return
        with self._count_lock:
            self._outstanding += 1
        reply = _Reply(self, ident, frame.request_id)
        try:
            self._handler(frame, reply)
        except Exception as exc:
            log.exception("handler failed on %s %r", frame.kind, frame.request_id)
            if not reply.done:
                reply(error_frame(frame.request_id, "internal", f"{type(exc).__name__}: {exc}"))

    def _deliver(self, ident: bytes, frame: Frame) -> None:
        with self._count_lock:
            self._outstanding -= 1
        if threading.get_ident() == self._io_ident and not self._replies:
            if not self._send(ident, frame):
                self._replies.append((ident, frame))
        else:
            self._replies.append((ident, frame))
            os.eventfd_write(self._wake_fd, 1)

    def _flush_replies(self) -> None:
        while self._replies:
            ident, frame = self._replies.popleft()
            if not self._send(ident, frame):
                self._replies.appendleft((ident, frame))  # peer's queue full: retry next turn
                return

    def _send(self, ident: bytes, frame: Frame) -> bool:
        """Send one reply; False only when the peer's queue is full (try again later)."""
        parts: list[Any] = encode(frame)
        try:
            self._sock.send_multipart([ident, *parts], flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the peer left; it has failed the request itself
            self._obs.on_dropped_reply("peer_gone")
            log.warning("reply %r dropped: peer gone (%s)", frame.request_id, exc.strerror)
            return True
        self._obs.on_bytes("out", _nbytes(parts[1:]))
        return True


class _Reply:
    """The one-shot reply function handed to a server handler."""

    __slots__ = ("_server", "_ident", "request_id", "done")

    def __init__(self, server: TcpServer, ident: bytes, request_id: str) -> None:
        self._server = server
        self._ident = ident
        self.request_id = request_id
        self.done = False

    def __call__(self, frame: Frame) -> None:
        if self.done:
            raise TransportError(f"request {self.request_id!r} was already answered")
        self.done = True
        self._server._deliver(self._ident, frame)
