"""Constants and helpers shared by the TCP channel's client (tcp.py) and server (tcp_server.py)."""

from __future__ import annotations

import errno
import os
import threading
from typing import Any, cast

import zmq

from transport.errors import ChannelClosed, FrameTooLarge, PeerUnavailable, TransportError
from transport.frames import MAX_HEADER_BYTES, view

DEFAULT_HWM = 32                  # messages queued per socket direction before pushing back
RECONNECT_IVL_MS = 100            # zmq reconnect backoff: first retry ...
RECONNECT_IVL_MAX_MS = 1000       # ... doubling up to this cap
LOOP_TICK_S = 0.1                 # longest poll of an I/O thread; bounds how late deadlines are noticed
CALLER_POLL_MAX_S = 0.05          # request(): longest wait on the socket fd before re-checking
CALLER_SPIN_S = 0.0005            # request(): busy-poll this long for the reply before sleeping on the fd
SERVER_SPIN_S = 0.0005            # server: busy-poll this long after traffic before sleeping on the fd
SPIN_MAX_BYTES = 64 * 1024        # busy-poll only around messages up to this payload: for bigger ones the
                                  # transfer itself outlasts a wake-up, and the CPU is better left to zmq
REPLY_RETRY_MS = 1                # server: retry interval for replies held back by a full peer queue
# pyzmq sends a buffer zero-copy only from this size up; below it copies. Zero-copy costs a
# wake-up of pyzmq's garbage-collector thread per message (to release the buffer), which is
# dearer than copying up to a few hundred KiB.
ZERO_COPY_MIN_BYTES = 512 * 1024
ERROR_BACKOFF_S = 0.05            # pause after an unexpected error in an I/O turn, before the next
RECV_BATCH = 64                   # server: messages read per turn before sending replies again
CLOSE_JOIN_S = 5.0                # close(): longest wait for the I/O thread to finish

HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
MONITOR_EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | HANDSHAKE_FAILED


_PEER_GONE = {errno.EHOSTUNREACH, errno.ECONNREFUSED, errno.ECONNRESET, errno.ENOTCONN, errno.EPIPE}
_LOCAL_CLOSED = {zmq.ETERM, errno.ENOTSOCK}
_ADDRESS = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES}


def from_zmq(exc: zmq.ZMQError, doing: str) -> TransportError:
    """The transport error for a zmq error raised while `doing` (e.g. "listen on tcp://0.0.0.0:5555"):
    the one place pyzmq's errors become this package's, as httpx maps httpcore's.

        EHOSTUNREACH, ECONNREFUSED, ...   -> PeerUnavailable (the peer left or is not there)
        ETERM, ENOTSOCK                   -> ChannelClosed (closed on this side)
        EMSGSIZE                          -> FrameTooLarge
        EADDRINUSE, EADDRNOTAVAIL, EACCES -> TransportError naming the address and what to change
        anything else                     -> TransportError with zmq's own words
    """
    why = exc.strerror or str(exc)
    if exc.errno in _PEER_GONE:
        return PeerUnavailable(f"cannot {doing}: {why} (the peer left or is not running); retry it")
    if exc.errno in _LOCAL_CLOSED:
        return ChannelClosed(f"cannot {doing}: the channel is closed ({why})")
    if exc.errno == errno.EMSGSIZE:
        return FrameTooLarge(f"cannot {doing}: the message is over the size limit ({why})")
    if exc.errno in _ADDRESS:
        return TransportError(f"cannot {doing}: {why}; stop the process holding it or change the port "
                              "in env_config.json")
    return TransportError(f"cannot {doing}: {why}")


def new_socket(ctx: zmq.Context, kind: int, hwm: int, max_message_bytes: int) -> zmq.Socket:
    """A socket of `kind` (zmq.DEALER / zmq.ROUTER) with the channel's common options: no linger,
    `hwm` messages each way, zero-copy from ZERO_COPY_MIN_BYTES, messages over `max_message_bytes`
    (plus the header) refused by zmq itself."""
    sock = ctx.socket(kind)
    sock.linger = 0
    sock.sndhwm = hwm
    sock.rcvhwm = hwm
    sock.copy_threshold = ZERO_COPY_MIN_BYTES
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes + MAX_HEADER_BYTES)
    return sock


# pyzmq's Cython socket methods, called directly: the Python wrappers (send_multipart,
# recv_multipart) add ~2 us per message in flag enums and type checks.
_send = zmq.backend.Socket.send
_recv = zmq.backend.Socket.recv
_get = zmq.backend.Socket.get
_SNDMORE, _NOBLOCK, _EVENTS, _POLLIN = int(zmq.SNDMORE), int(zmq.NOBLOCK), int(zmq.EVENTS), int(zmq.POLLIN)


def send_parts(sock: zmq.Socket, parts: list[Any]) -> None:
    """`sock.send_multipart(parts, zmq.NOBLOCK, copy=False)` (copy below the socket's copy_threshold).

    Raises zmq.Again on the first part only when the queue is full: zmq takes a multipart
    message whole or not at all.
    """
    last = len(parts) - 1
    for i, part in enumerate(parts):
        _send(sock, part, _NOBLOCK | _SNDMORE if i < last else _NOBLOCK, copy=False)


def recv_parts(sock: zmq.Socket) -> list[zmq.Frame]:
    """`sock.recv_multipart(zmq.NOBLOCK, copy=False)`."""
    part = _recv(sock, _NOBLOCK, copy=False)
    parts = [part]
    while part.more:  # the received frame says so; no getsockopt(RCVMORE) per part
        part = _recv(sock, _NOBLOCK, copy=False)
        parts.append(part)
    return parts


def readable(sock: zmq.Socket) -> bool:
    """A message can be read now (also re-arms zmq's notification fd when it says no)."""
    return bool(cast(int, _get(sock, _EVENTS)) & _POLLIN)


def nbytes(parts: list[Any]) -> int:
    return sum(view(p).nbytes for p in parts)


def drain_eventfd(fd: int) -> None:
    try:
        os.eventfd_read(fd)
    except BlockingIOError:
        pass


class Waker:
    """An eventfd an I/O thread polls, written by other threads to wake it.

    `wake()` after `close()` is a no-op: without this, a late wake-up (a reply relayed after the
    channel closed) would write to a closed descriptor, or to whatever reused its number.
    """

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._lock = threading.Lock()
        self._closed = False

    def wake(self) -> None:
        with self._lock:
            if not self._closed:
                os.eventfd_write(self.fd, 1)

    def drain(self) -> None:
        drain_eventfd(self.fd)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self.fd)


_local = threading.local()


class _EventFd:
    """One eventfd per thread that calls request(), closed with the thread's locals."""

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def __del__(self) -> None:
        os.close(self.fd)


def thread_eventfd() -> int:
    efd = getattr(_local, "efd", None)
    if efd is None:
        efd = _local.efd = _EventFd()
    return efd.fd
