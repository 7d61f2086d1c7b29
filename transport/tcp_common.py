"""Constants and helpers shared by the TCP channel's client (tcp.py) and server (tcp_server.py)."""

from __future__ import annotations

import os
import threading
from typing import Any

from transport.frames import view

DEFAULT_HWM = 32                  # messages queued per socket direction before pushing back
RECONNECT_IVL_MS = 100            # zmq reconnect backoff: first retry ...
RECONNECT_IVL_MAX_MS = 1000       # ... doubling up to this cap
LOOP_TICK_S = 0.1                 # longest poll of an I/O thread; bounds how late deadlines are noticed
CALLER_POLL_MAX_S = 0.05          # request(): longest wait on the socket fd before re-checking
REPLY_RETRY_MS = 1                # server: retry interval for replies held back by a full peer queue
# pyzmq sends a buffer zero-copy only from this size up; below it copies. Zero-copy costs a
# wake-up of pyzmq's garbage-collector thread per message (to release the buffer), which is
# dearer than copying up to a few hundred KiB.
ZERO_COPY_MIN_BYTES = 512 * 1024
ERROR_BACKOFF_S = 0.05            # pause after an unexpected error in an I/O turn, before the next
RECV_BATCH = 64                   # server: messages read per turn before sending replies again


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
