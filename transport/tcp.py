"""TCP channel over pyzmq, client side (DEALER); the server side (ROUTER) is tcp_server.py.

Wire: the DEALER sends `encode(frame)` parts; the ROUTER receives `[peer_identity, *parts]` and
answers `[peer_identity, *encode(reply)]` with the same request id. Client threads share the DEALER
under one lock and send and read themselves (see TcpClient).

Liveness: the client sends a `ping` when idle for HEARTBEAT_INTERVAL_S; a request with nothing heard
from the peer for HEARTBEAT_TIMEOUT_S fails with PeerUnavailable, and a dropped connection (peer
restarted) fails the requests in flight at once; zmq reconnects with capped backoff. Bounded:
SNDHWM/RCVHWM, `max_in_flight` per client, `max_outstanding` per server (it stops reading when its
handler is that far behind).
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import select
import threading
import time
from concurrent.futures import Future
from typing import Any, cast

import zmq
import zmq.auth.thread
from zmq.utils.monitor import recv_monitor_message

from transport import curve as curve_mod
from transport.base import (
    DEFAULT_MAX_IN_FLIGHT,
    HEARTBEAT_ID_PREFIX,
    HEARTBEAT_INTERVAL_S,
    HEARTBEAT_KIND,
    HEARTBEAT_TIMEOUT_S,
    RESULT_GRACE_S,
    ChannelInfo,
    ClientChannel,
    InFlight,
    closed_error,
)
from transport.errors import ChannelClosed, FrameError, FrameTooLarge, PeerUnavailable, RequestTimeout
from transport.frames import DEFAULT_MAX_BYTES, Frame, decode, decode_header, encode
from transport.tcp_common import (
    CALLER_POLL_MAX_S,
    CALLER_SPIN_S,
    CLOSE_JOIN_S,
    DEFAULT_HWM,
    ERROR_BACKOFF_S,
    HANDSHAKE_FAILED,
    LOOP_TICK_S,
    MONITOR_EVENTS,
    RECONNECT_IVL_MAX_MS,
    RECONNECT_IVL_MS,
    SPIN_MAX_BYTES,
    Waker,
    drain_eventfd,
    from_zmq,
    nbytes,
    new_socket,
    readable,
    recv_parts,
    send_parts,
    thread_eventfd,
)

log = logging.getLogger("transport.tcp")


class TcpClient(ClientChannel):
    """DEALER side. `submit`/`request` are thread-safe; replies are matched by request id.

    Threads share the socket under one lock (zmq allows that with a full memory barrier, which
    the lock gives); nobody holds the lock while waiting. Whoever holds it leaves the socket
    drained (every readable reply read and resolved), so zmq's edge-style notification fd
    (`zmq.FD`) signals again for the next reply and no wake-up is lost. `request()` sends on
    the calling thread, busy-polls for its reply up to `caller_spin_s` (small requests only),
    then waits on that fd itself: no hand-off through another thread, no wake-up of the I/O
    thread. The I/O thread reads only for futures nobody reads for (`submit()` without
    `wait()`), and handles heartbeats, deadlines, reconnects and sends held back by the HWM.

    Args:
        endpoint: "tcp://host:port" or "ipc:///path".
        max_message_bytes: replies larger than this are refused (FrameTooLarge).
        curve: client keys (`transport.curve.client_keys`) to encrypt and authenticate, or None.
        heartbeat_timeout_s: None disables the liveness deadline (for a peer that may be busy
            without answering pings); disconnects still count.
    """

    def __init__(self, endpoint: str, *, max_message_bytes: int = DEFAULT_MAX_BYTES,
                 curve: curve_mod.CurveKeys | None = None, heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
                 heartbeat_timeout_s: float | None = HEARTBEAT_TIMEOUT_S, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 hwm: int = DEFAULT_HWM, caller_spin_s: float = CALLER_SPIN_S, reason: str = "") -> None:
        self.info = ChannelInfo("tcp", endpoint, reason)
        self._max_bytes = max_message_bytes
        self._curve = curve
        self._hb_interval = heartbeat_interval_s
        self._hb_timeout = heartbeat_timeout_s
        self._hwm = hwm
        self._inflight = InFlight(max_in_flight)
        self._outbox: collections.deque[tuple[str, list[Any]]] = collections.deque()
        # Re-entrant: futures are resolved with the lock held, and a done-callback may submit again.
        self._lock = threading.RLock()
        self._readers = 0  # threads in request()/wait(), reading the socket themselves
        self._io_reads = False  # the I/O thread's poll includes the socket (it reads for everyone)
        self._spin_s = caller_spin_s
        self._waker = Waker()
        self._closed = threading.Event()
        self._hb_ids = itertools.count()
        self._last_heard, self._last_sent = time.monotonic(), 0.0
        self._problem = ""
        self.connected = False
        self._ctx = zmq.Context(io_threads=1)
        try:
            self._sock, self._monitor, self._fd = self._open_socket()
        except zmq.ZMQError as exc:
            self._ctx.term()
            self._waker.close()
            raise from_zmq(exc, f"connect a zmq DEALER to {endpoint!r}") from exc
        self._thread = threading.Thread(target=self._run, name=f"tcp-client {endpoint}", daemon=True)
        self._thread.start()

    # -- public ------------------------------------------------------------------------------
    def submit(self, frame: Frame, timeout_s: float) -> Future[Frame]:
        return self._start(frame, timeout_s, reader=False)

    def request(self, frame: Frame, timeout_s: float) -> Frame:
        """Send and read the reply on this thread: no hand-off to or wake-up of the I/O thread."""
        spin_s = self._spin_s if frame.nbytes <= SPIN_MAX_BYTES else 0.0
        return self._read(self._start(frame, timeout_s, reader=True), timeout_s, spin_s)

    def wait(self, fut: Future[Frame], timeout_s: float) -> Frame:
        """The reply of a submitted request, read by this thread itself (no hand-off)."""
        with self._lock:
            self._readers += 1
        return self._read(fut, timeout_s, self._spin_s)

    def _start(self, frame: Frame, timeout_s: float, reader: bool) -> Future[Frame]:
        if self._closed.is_set():
            raise ChannelClosed(f"channel to {self.info.endpoint} is closed")
        parts: list[Any] = encode(frame)
        size = nbytes(parts[1:])
        if size > self._max_bytes:
            raise FrameTooLarge(f"request {frame.request_id!r} carries {size} bytes; the limit is {self._max_bytes} "
                                "(transport.max_message_mb)")
        now = time.monotonic()
        fut = self._inflight.add(frame.request_id, now + timeout_s, now, timeout_s)
        with self._lock:
            if self._closed.is_set():
                self._inflight.fail(frame.request_id, ChannelClosed(f"channel to {self.info.endpoint} is closed"))
                return fut
            self._outbox.append((frame.request_id, parts))
            self._send_outbox(now)
            if not reader:  # a send may consume zmq's fd signal: read now what it announced (a
                self._drain(now)  # reader drains first thing anyway)
            if reader:
                self._readers += 1
            # The I/O thread must read for a future nobody reads for, and send what HWM held back.
            wake = bool(self._outbox) or (not reader and not self._readers and not self._io_reads
                                          and not fut.done())
        if wake:
            self._waker.wake()
        return fut

    def _read(self, fut: Future[Frame], timeout_s: float, spin_s: float) -> Frame:
        """Read replies on this thread (as one of `_readers`) until `fut` has its own."""
        try:
            self._read_until(fut, time.monotonic() + timeout_s + RESULT_GRACE_S, spin_s)
        finally:
            with self._lock:
                self._readers -= 1
                # Others' futures still wait: the I/O thread reads for them from now on.
                wake = not self._readers and not self._io_reads and len(self._inflight) > 0
            if wake:
                self._waker.wake()
        try:
            return fut.result(timeout=RESULT_GRACE_S)
        except TimeoutError as exc:
            raise RequestTimeout(f"no reply within {timeout_s:.1f}s from {self.info.endpoint}") from exc

    def _read_until(self, fut: Future[Frame], deadline: float, spin_s: float) -> None:
        # 1. Busy-poll for `spin_s` (CALLER_SPIN_S for small requests): a reply that comes back
        #    within it is read without this thread sleeping (a sleep/wake-up costs tens of us on a
        #    VM, several per round trip). sched_yield leaves the CPU to zmq's I/O thread meanwhile.
        spin_end = time.perf_counter() + spin_s
        while not fut.done() and time.perf_counter() < spin_end:
            with self._lock:
                if self._closed.is_set():
                    return
                self._drain(time.monotonic())
            os.sched_yield()
        if fut.done():
            return
        # 2. Block on the socket's fd AND on this thread's eventfd, which the future's callback
        #    signals: another reader may read our reply and disarm the socket fd.
        done_fd = thread_eventfd()
        fut.add_done_callback(lambda _f: os.eventfd_write(done_fd, 1))
        try:
            self._block_until(fut, done_fd, deadline)
        finally:
            drain_eventfd(done_fd)

    def _block_until(self, fut: Future[Frame], done_fd: int, deadline: float) -> None:
        poller = select.poll()
        polled_fd = -1
        while not fut.done():
            left = deadline - time.monotonic()
            if left <= 0 or self._closed.is_set():
                return
            with self._lock:
                if self._closed.is_set():
                    return
                self._drain(time.monotonic())
                fd = self._fd
            if fut.done():
                return
            if fd != polled_fd:
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                poller.register(done_fd, select.POLLIN)
                polled_fd = fd
            poller.poll(max(1, int(min(left, CALLER_POLL_MAX_S) * 1000)))

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._waker.wake()
            self._thread.join(timeout=CLOSE_JOIN_S)
        self._inflight.fail_all(closed_error(self.info.endpoint))

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    # -- socket ------------------------------------------------------------------------------
    def _open_socket(self) -> tuple[zmq.Socket, zmq.Socket, int]:
        sock = new_socket(self._ctx, zmq.DEALER, self._hwm, self._max_bytes)
        sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
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
        return sock, monitor, cast(int, sock.FD)  # the fd is fixed per socket; reading .FD costs ~3 us

    def _reset_socket(self) -> None:
        self._close_socket()
        self._sock, self._monitor, self._fd = self._open_socket()

    def _close_socket(self) -> None:
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self._monitor.close(linger=0)
        self._sock.close(linger=0)

    # -- I/O thread --------------------------------------------------------------------------
    def _run(self) -> None:
        poller = select.poll()
        polled: tuple[int, int] = (-1, -1)
        try:
            while not self._closed.is_set():
                try:
                    poller, polled = self._turn(poller, polled)
                except Exception:  # a bug or an odd zmq error must not strand the futures
                    log.exception("tcp client I/O turn for %s failed; carrying on", self.info.endpoint)
                    self._closed.wait(ERROR_BACKOFF_S)
        finally:
            with self._lock:
                self._inflight.fail_all(closed_error(self.info.endpoint))
                self._close_socket()
            self._ctx.term()
            self._waker.close()

    def _turn(self, poller: select.poll, polled: tuple[int, int]) -> tuple[select.poll, tuple[int, int]]:
        with self._lock:
            now = time.monotonic()
            self._on_monitor(now)
            self._send_outbox(now)
            self._heartbeat(now)
            self._drain(now)
            self._expire(now)
            # The I/O thread reads replies only for futures nobody else reads for: while a
            # caller reads for everyone, two threads woken by one reply would fight over the
            # lock, and with nothing in flight a wake-up per reply would be wasted. Callers
            # wake it (Waker) when that changes; pongs wait for the next turn meanwhile.
            self._io_reads = not self._readers and len(self._inflight) > 0
            fds = (self._fd if self._io_reads else -1, self._monitor.FD)
            wait_ms = self._poll_timeout_ms(now)
        if fds != polled:
            poller = select.poll()
            for fd in (*fds, self._waker.fd):
                if fd >= 0:
                    poller.register(fd, select.POLLIN)
        if any(fd == self._waker.fd for fd, _ in poller.poll(wait_ms)):
            self._waker.drain()
        return poller, fds

    def _poll_timeout_ms(self, now: float) -> int:
        deadline = self._inflight.next_deadline()
        until_deadline = LOOP_TICK_S if deadline is None else deadline - now
        wait = min(LOOP_TICK_S, self._last_sent + self._hb_interval - now, until_deadline)
        return max(0, int(wait * 1000)) if not self._outbox else min(int(LOOP_TICK_S * 1000), 1)

    # The methods below run with self._lock held.
    def _send_outbox(self, now: float) -> None:
        while self._outbox:
            rid, parts = self._outbox[0]
            try:
                send_parts(self._sock, parts)
            except zmq.Again:
                return  # HWM reached: the peer is slow; retried by the I/O thread
            except zmq.ZMQError as exc:
                self._outbox.popleft()
                self._inflight.fail(rid, from_zmq(exc, f"send request {rid!r} to {self.info.endpoint}"))
                continue
            self._outbox.popleft()
            self._inflight.mark_sent(rid, now)
            self._last_sent = now

    def _drain(self, now: float) -> None:
        """Read every reply available now (leaves the notification fd armed for the next one)."""
        while readable(self._sock):  # cheaper than a zmq.Again per call
            parts: list[Any] = recv_parts(self._sock)
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
            self._inflight.fail(decode_header(parts[0])["id"], exc)
        except (FrameError, IndexError):
            log.warning("malformed reply from %s dropped: %s", self.info.endpoint, exc)

    def _on_monitor(self, now: float) -> None:
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            kind = event["event"]
            if kind in (zmq.EVENT_CONNECTED, zmq.EVENT_HANDSHAKE_SUCCEEDED):
                self.connected = kind == zmq.EVENT_HANDSHAKE_SUCCEEDED or self._curve is None
                self._problem = ""
            elif kind & HANDSHAKE_FAILED:
                self._problem = f" (CurveZMQ handshake failed: {curve_mod.HANDSHAKE_HINT})"
            elif kind == zmq.EVENT_DISCONNECTED:
                self.connected = False
                self._drain(now)  # replies that made it before the drop still count
                lost = self._inflight.fail_all(lambda rid: PeerUnavailable(
                    f"connection to {self.info.endpoint} dropped with request {rid!r} in flight "
                    f"(the peer restarted or crashed){self._problem}; retry it"))
                if lost:
                    log.warning("connection to %s dropped: %d requests in flight failed", self.info.endpoint, lost)
                self._reset_socket()
                return

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


