"""The one small channel interface every backend (tcp, rdma) implements.

Client side: `submit(frame, timeout_s) -> Future[Frame]` (thread-safe, many in flight, replies
matched by `frame.request_id`), `request(frame, timeout_s) -> Frame` (blocking). Every request
ends in a reply Frame or a typed `TransportError` — never silence.

Server side: `start()` then the handler is called as `handler(frame, reply)` for every
well-formed request; `reply(frame)` may be called once, from any thread. Malformed frames never
reach the handler: the channel answers them with an `error` frame (code `malformed_frame`,
`frame_too_large`, `dtype_not_allowed`) and reports them through `ChannelObserver`.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from transport.errors import (
    ChannelClosed,
    DtypeNotAllowed,
    FrameError,
    FrameTooLarge,
    RequestTimeout,
    TransportError,
)
from transport.frames import Frame

# Protocol constants shared by every backend.
HEARTBEAT_KIND = "ping"          # answered by the server channel itself, never by the handler
HEARTBEAT_REPLY_KIND = "pong"
HEARTBEAT_ID_PREFIX = "hb:"
HEARTBEAT_INTERVAL_S = 1.0       # client sends a ping when it sent nothing for this long
HEARTBEAT_TIMEOUT_S = 2.5        # silence this long after a send -> peer declared dead; checked every
                                 # LOOP_TICK_S (0.1 s), so a dead peer is noticed within 3 s
RESULT_GRACE_S = 1.0             # request() waits this much beyond timeout_s for the I/O thread
DEFAULT_MAX_IN_FLIGHT = 64       # per client: more requests block in submit() (backpressure)

Reply = Callable[[Frame], None]
Handler = Callable[[Frame, Reply], None]


def error_code(exc: FrameError) -> str:
    """The `code` of the error frame answering a malformed frame."""
    if isinstance(exc, FrameTooLarge):
        return "frame_too_large"
    if isinstance(exc, DtypeNotAllowed):
        return "dtype_not_allowed"
    return "malformed_frame"


class ChannelObserver:
    """Hooks a server channel calls (metrics). Default: do nothing. Must be cheap and thread-safe."""

    def on_bytes(self, direction: str, nbytes: int) -> None:
        """`direction` is "in" or "out"; `nbytes` the payload bytes of one message."""

    def on_malformed(self, code: str) -> None:
        """A received frame failed the checks; `code` as in `error_code`."""

    def on_dropped_reply(self, reason: str) -> None:
        """A reply could not be delivered (the peer left)."""


@dataclass
class ChannelInfo:
    """What a channel is, for logs and /health: backend "tcp"/"rdma", its address, and why."""

    backend: str
    endpoint: str
    reason: str = ""


class ClientChannel(abc.ABC):
    """Client side of a channel (node 1 -> gateway, gateway -> VITON)."""

    info: ChannelInfo

    @abc.abstractmethod
    def submit(self, frame: Frame, timeout_s: float) -> Future[Frame]:
        """Queue `frame`; the future gets the reply Frame or a TransportError.

        Blocks (up to `timeout_s`) while `max_in_flight` requests are outstanding; raises
        `RequestTimeout` if no slot frees, `ChannelClosed` after close(), `TransportError` if
        `frame.request_id` is already in flight, `DtypeNotAllowed` for a tensor it cannot send.
        """

    def request(self, frame: Frame, timeout_s: float) -> Frame:
        """Send `frame` and block for its reply (a Frame of any kind, `error` included)."""
        return self.wait(self.submit(frame, timeout_s), timeout_s)

    def wait(self, fut: Future[Frame], timeout_s: float) -> Frame:
        """Block for a submitted request's reply (backends may read it on the calling thread)."""
        try:
            return fut.result(timeout=timeout_s + RESULT_GRACE_S)
        except TimeoutError as exc:  # the I/O thread should have expired it; belt and braces
            raise RequestTimeout(f"no reply within {timeout_s:.1f}s from {self.info.endpoint}") from exc

    @abc.abstractmethod
    def close(self) -> None:
        """Fail everything in flight with ChannelClosed and release the socket / queue pair."""

    def __enter__(self) -> ClientChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ServerChannel(abc.ABC):
    """Server side of a channel: receives frames, hands them to a handler, sends replies."""

    info: ChannelInfo

    @abc.abstractmethod
    def start(self) -> str:
        """Bind / listen and start serving; returns the bound address (ports resolved)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop serving; replies not yet sent are dropped (and reported)."""

    def __enter__(self) -> ServerChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InFlight:
    """Futures by request id with deadlines: the bookkeeping every client backend shares.

    Thread-safe. `add` refuses a duplicate id; every removal path (reply, timeout, failure,
    close) resolves the future exactly once, so no request is silently forgotten.
    """

    def __init__(self, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # waited on only while max_in_flight are out
        self._items: dict[str, tuple[Future[Frame], float, float]] = {}  # id -> (fut, deadline, sent)
        self.max_in_flight = max_in_flight

    def add(self, request_id: str, deadline: float, now: float, wait_s: float) -> Future[Frame]:
        fut: Future[Frame] = Future()
        with self._lock:
            if len(self._items) >= self.max_in_flight and not self._room.wait_for(
                    lambda: len(self._items) < self.max_in_flight, timeout=max(wait_s, 0.0)):
                raise RequestTimeout(f"{self.max_in_flight} requests already in flight and none finished "
                                     f"within {wait_s:.1f}s: the peer is slower than the offered load")
            if request_id in self._items:
                raise TransportError(f"request id {request_id!r} is already in flight; ids must be unique")
            self._items[request_id] = (fut, deadline, now)
        return fut

    def mark_sent(self, request_id: str, now: float) -> None:
        with self._lock:
            item = self._items.get(request_id)
            if item is not None:
                self._items[request_id] = (item[0], item[1], now)

    def resolve(self, request_id: str, frame: Frame) -> bool:
        """Give `frame` to the waiting future; False if nobody waits for that id (late reply)."""
        fut = self._pop(request_id)
        if fut is None:
            return False
        fut.set_result(frame)
        return True

    def fail(self, request_id: str, exc: BaseException) -> bool:
        fut = self._pop(request_id)
        if fut is None:
            return False
        fut.set_exception(exc)
        return True

    def fail_all(self, make_exc: Callable[[str], BaseException]) -> int:
        with self._lock:
            ids = list(self._items)
        return sum(self.fail(rid, make_exc(rid)) for rid in ids)

    def expired(self, now: float) -> list[str]:
        with self._lock:
            return [rid for rid, (_, deadline, _) in self._items.items() if deadline <= now]

    def silent_since(self, now: float, last_heard: float, limit_s: float) -> list[str]:
        """Ids sent more than `limit_s` ago with nothing heard from the peer since."""
        with self._lock:
            return [rid for rid, (_, _, sent) in self._items.items()
                    if now - max(sent, last_heard) > limit_s]

    def next_deadline(self) -> float | None:
        with self._lock:
            return min((d for _, d, _ in self._items.values()), default=None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _pop(self, request_id: str) -> Future[Frame] | None:
        with self._lock:
            item = self._items.pop(request_id, None)
            if item is None:
                return None
            self._room.notify()  # a submit() blocked on max_in_flight may go on (cheap if none waits)
        return item[0]


def closed_error(endpoint: str) -> Callable[[str], BaseException]:
    return lambda rid: ChannelClosed(f"channel to {endpoint} was closed with request {rid!r} in flight")
