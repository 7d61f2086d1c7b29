"""TCP channel, server side: a zmq ROUTER serving `transport.tcp` clients (see tcp.py for the wire).

The socket belongs to the server's I/O thread; replies from other threads reach it through a deque
plus an eventfd its poller watches, so they go out without a polling delay.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import threading
import time
from typing import Any

import zmq
import zmq.auth.thread

from transport import curve as curve_mod
from transport.base import (
    HEARTBEAT_KIND,
    HEARTBEAT_REPLY_KIND,
    ChannelInfo,
    ChannelObserver,
    Handler,
    ServerChannel,
    error_code,
)
from transport.errors import FrameError, TransportError
from transport.frames import DEFAULT_MAX_BYTES, Frame, decode, decode_header, encode, error_frame
from transport.tcp_common import (
    CLOSE_JOIN_S,
    DEFAULT_HWM,
    ERROR_BACKOFF_S,
    LOOP_TICK_S,
    RECV_BATCH,
    REPLY_RETRY_MS,
    SERVER_SPIN_S,
    SPIN_MAX_BYTES,
    Waker,
    from_zmq,
    nbytes,
    new_socket,
    readable,
    recv_parts,
    send_parts,
)

DEFAULT_MAX_OUTSTANDING = 256     # requests handed to the handler and not yet answered

log = logging.getLogger("transport.tcp")


class TcpServer(ServerChannel):
    """ROUTER side: `handler(frame, reply)` runs on the I/O thread and must not block;
    `reply` may be called later from any thread. Answers `ping` and malformed frames itself."""

    def __init__(self, endpoint: str, handler: Handler, *, max_message_bytes: int = DEFAULT_MAX_BYTES,
                 curve: curve_mod.CurveKeys | None = None, observer: ChannelObserver | None = None,
                 hwm: int = DEFAULT_HWM, max_outstanding: int = DEFAULT_MAX_OUTSTANDING,
                 spin_s: float = SERVER_SPIN_S) -> None:
        self.info = ChannelInfo("tcp", endpoint)
        self._spin_s = spin_s
        self._last_in_bytes = 0
        self._handler = handler
        self._max_bytes = max_message_bytes
        self._curve = curve
        self._obs = observer or ChannelObserver()
        self._hwm = hwm
        self._max_outstanding = max_outstanding
        self._outstanding = 0
        self._count_lock = threading.Lock()
        self._replies: collections.deque[tuple[bytes, Frame]] = collections.deque()
        self._closed = threading.Event()
        self._io_ident = -1
        self._thread: threading.Thread | None = None
        self._auth: zmq.auth.thread.ThreadAuthenticator | None = None
        self._pollobj: select.poll | None = None

    def start(self) -> str:
        self._ctx = zmq.Context(io_threads=1)
        sock = new_socket(self._ctx, zmq.ROUTER, self._hwm, self._max_bytes)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
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
            raise from_zmq(exc, f"listen on {self.info.endpoint}") from exc
        self._sock = sock
        self.info.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._waker = Waker()
        self._thread = threading.Thread(target=self._run, name=f"tcp-server {self.info.endpoint}", daemon=True)
        self._thread.start()
        return self.info.endpoint

    def close(self) -> None:
        if self._thread is None or self._closed.is_set():
            return
        self._closed.set()
        self._waker.wake()
        self._thread.join(timeout=CLOSE_JOIN_S)

    def _stop_ctx(self) -> None:
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()

    # -- I/O thread --------------------------------------------------------------------------
    def _run(self) -> None:
        self._io_ident = threading.get_ident()
        try:
            while not self._closed.is_set():
                try:
                    self._turn()
                except Exception:  # a bug or an odd zmq error must not end the serving loop
                    log.exception("tcp server I/O turn on %s failed; serving on", self.info.endpoint)
                    self._closed.wait(ERROR_BACKOFF_S)
        finally:
            for _ in self._replies:
                self._obs.on_dropped_reply("server_closed")
            self._sock.close(linger=0)
            self._stop_ctx()
            self._waker.close()

    def _turn(self) -> None:
        # Wait on zmq's notification fd (readable = "check the socket"), then work until the
        # socket is drained, so the fd is armed again for the next message (no lost wake-up).
        if self._pollobj is None:
            self._pollobj = select.poll()
            self._pollobj.register(self._sock.FD, select.POLLIN)
            self._pollobj.register(self._waker.fd, select.POLLIN)
        events = self._pollobj.poll(REPLY_RETRY_MS if self._replies else int(LOOP_TICK_S * 1000))
        if any(fd == self._waker.fd for fd, _ in events):
            self._waker.drain()
        if not self._work() or self._last_in_bytes > SPIN_MAX_BYTES:
            return
        # Busy-poll a short while after traffic: a chatty client's next request (or a reply
        # from another thread) usually comes within it, and is then handled without this
        # thread sleeping and being woken again (tens of us each on a VM).
        spin_end = time.perf_counter() + self._spin_s
        while time.perf_counter() < spin_end and not self._closed.is_set():
            if self._work():
                spin_end = time.perf_counter() + self._spin_s
            else:  # nothing, or only replies a full peer queue still holds back
                os.sched_yield()

    def _work(self) -> bool:
        """Send queued replies and handle every readable message; False if nothing moved."""
        moved = 0
        while True:
            moved += self._flush_replies()
            got = 0
            while (got < RECV_BATCH and self._outstanding < self._max_outstanding
                   and readable(self._sock)):
                self._on_message(recv_parts(self._sock))
                got += 1
            moved += got
            if got < RECV_BATCH:
                return moved + self._flush_replies() > 0

    def _on_message(self, parts: list[Any]) -> None:
        ident = parts[0].bytes
        body = parts[1:]
        self._last_in_bytes = size = nbytes(body[1:])
        self._obs.on_bytes("in", size)
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
        if self._closed.is_set():
            self._obs.on_dropped_reply("server_closed")
            log.info("reply %r dropped: the server channel is closed", frame.request_id)
            return
        if threading.get_ident() == self._io_ident and not self._replies:
            if not self._send(ident, frame):
                self._replies.append((ident, frame))
        else:
            self._replies.append((ident, frame))
            self._waker.wake()

    def _flush_replies(self) -> int:
        """Send queued replies in order; returns how many went (stops at a full peer queue)."""
        sent = 0
        while self._replies:
            ident, frame = self._replies.popleft()
            if not self._send(ident, frame):
                self._replies.appendleft((ident, frame))  # peer's queue full: retry next turn
                break
            sent += 1
        return sent

    def _send(self, ident: bytes, frame: Frame) -> bool:
        """Send one reply; False only when the peer's queue is full (try again later)."""
        parts: list[Any] = encode(frame)
        try:
            send_parts(self._sock, [ident, *parts])
        except zmq.Again:
            return False
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the peer left; it has failed the request itself
            self._obs.on_dropped_reply("peer_gone")
            log.warning("reply %r dropped: peer gone (%s)", frame.request_id, exc.strerror)
            return True
        self._obs.on_bytes("out", nbytes(parts[1:]))
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
