"""RDMA channel over pyverbs: rdma_cm connection, one RC queue pair, registered slots, credits.

NOT RUN ON RDMA HARDWARE. The machines this was written on have no RDMA device (not even
SoftRoCE); `probe()` and the fallback around it ran, the data path below did not. What ran
here: the wire layout, chunking, reassembly and credit accounting as pure code
(`transport.layout`, test_layout.py), and this module's and rdma_conn.py's logic against a
SIMULATED queue pair / rdma_cm (tests/transport/fake_verbs.py, test_rdma_simulated.py) —
which checks our bookkeeping, not pyverbs' API or hardware behaviour.

Design (same interface as `transport.tcp`; connection internals in rdma_conn.py):
* Connection: `rdma_cm` synchronous API (`pyverbs.cmid.CMID`, RDMA_PS_TCP = RC QP) on
  `transport.rdma.rdma_port`; the client's connect runs under `connect_timeout_s`.
* Memory registered ONCE per connection and reused: `window` receive slots and `window` send
  slots of `slot_bytes` each, an 8-byte credit counter (remote-writable) and its 8-byte source.
  (GVirtuS registers memory per message; here nothing is registered on the data path.)
* Data: two-sided SEND/RECV of chunks (`transport.layout`): a frame is packed into one
  contiguous message, cut into slot-sized chunks, each chunk is one signaled SEND.
* Flow control: a chunk may be sent only while `sent - reposted < window`; the receiver
  RDMA-WRITEs its cumulative repost count into the sender's counter (announced in the HELLO
  chunk), so credit updates never consume receive slots and cannot deadlock.
* Failures: a completion with an error status (peer gone: flush / retry exceeded) breaks the
  connection; in-flight requests fail with PeerUnavailable. Every pyverbs error is translated.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any

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
from transport.errors import (
    ChannelClosed,
    FrameError,
    PeerUnavailable,
    RdmaUnavailable,
    RequestTimeout,
    TransportError,
)
from transport.frames import DEFAULT_MAX_BYTES, Frame, decode_header, error_frame
from transport.layout import unpack
from transport.rdma_conn import (
    DEFAULT_SLOT_BYTES,
    DEFAULT_WINDOW,
    SEND_TIMEOUT_S,
    Connection,
    probe,
    qp_init_attr,
    verbs,
)

REPLY_QUEUE_MAX = 256               # server: replies waiting for the connection's sender thread

log = logging.getLogger("transport.rdma")


class RdmaClient(ClientChannel):
    """Client side over RDMA. Raises RdmaUnavailable if no device or no connection in time."""

    def __init__(self, host: str, port: int, *, device: str | None = None, connect_timeout_s: float = 2.0,
                 max_message_bytes: int = DEFAULT_MAX_BYTES, window: int = DEFAULT_WINDOW,
                 slot_bytes: int = DEFAULT_SLOT_BYTES, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 reason: str = "") -> None:
        self.info = ChannelInfo("rdma", f"rdma://{host}:{port}", reason)
        dev = probe(device)
        self._v = verbs()
        self._inflight = InFlight(max_in_flight)
        self._closed = threading.Event()
        self._last_heard = time.monotonic()
        box: dict[str, Any] = {}

        def connect() -> None:
            try:
                v = self._v
                ai = v.cmid.AddrInfo(dst=host, dst_service=str(port), port_space=v.cm.RDMA_PS_TCP)
                cmid = v.cmid.CMID(creator=ai, qp_init_attr=qp_init_attr(v, window))
                conn = Connection(v, cmid, window=window, slot_bytes=slot_bytes, max_bytes=max_message_bytes,
                                   name=self.info.endpoint)
                cmid.connect(v.cmid.ConnParam())
                conn.send_hello()
                box["conn"] = conn
            except Exception as exc:  # translated below, in the caller's thread
                box["error"] = exc

        t = threading.Thread(target=connect, name="rdma-connect", daemon=True)
        t.start()
        t.join(connect_timeout_s)
        if "conn" not in box:
            why = box.get("error") or f"no answer within {connect_timeout_s:.1f}s (transport.rdma.connect_timeout_s)"
            raise RdmaUnavailable(f"RDMA connection to {host}:{port} on {dev} failed: {why}")
        self._conn: Connection = box["conn"]
        self._recv_thread = threading.Thread(target=self._receive_loop, name="rdma-recv", daemon=True)
        self._recv_thread.start()
        self._hb_thread = threading.Thread(target=self._heartbeat_loop, name="rdma-heartbeat", daemon=True)
        self._hb_thread.start()

    def submit(self, frame: Frame, timeout_s: float) -> Future[Frame]:
        if self._closed.is_set():
            raise ChannelClosed(f"channel to {self.info.endpoint} is closed")
        now = time.monotonic()
        fut = self._inflight.add(frame.request_id, now + timeout_s, now, timeout_s)
        try:
            self._conn.send_frame(frame, timeout_s)
        except TransportError as exc:
            self._inflight.fail(frame.request_id, exc)
        return fut

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._conn.close()
            self._inflight.fail_all(closed_error(self.info.endpoint))

    def _receive_loop(self) -> None:
        while not self._closed.is_set():
            try:
                message = self._conn.receive()
            except PeerUnavailable as exc:
                self._fail_all(str(exc))
                return
            except FrameError as exc:
                log.warning("malformed chunk from %s: %s", self.info.endpoint, exc)
                continue
            if message is None:
                continue
            self._last_heard = time.monotonic()
            try:
                frame = unpack(message, self._conn.max_bytes)
            except FrameError as exc:
                log.warning("malformed reply from %s dropped: %s", self.info.endpoint, exc)
                continue
            if frame.kind == HEARTBEAT_REPLY_KIND and frame.request_id.startswith(HEARTBEAT_ID_PREFIX):
                continue
            if not self._inflight.resolve(frame.request_id, frame):
                log.info("late reply %r from %s dropped", frame.request_id, self.info.endpoint)

    def _fail_all(self, reason: str) -> None:
        self._inflight.fail_all(lambda rid: PeerUnavailable(f"{reason}; request {rid!r} was in flight"))

    def _heartbeat_loop(self) -> None:
        n = 0
        while not self._closed.wait(HEARTBEAT_INTERVAL_S):
            n += 1
            try:
                self._conn.send_frame(Frame(kind=HEARTBEAT_KIND, request_id=f"{HEARTBEAT_ID_PREFIX}{n}"),
                                      HEARTBEAT_INTERVAL_S)
            except TransportError:
                pass
            now = time.monotonic()
            for rid in self._inflight.expired(now):
                self._inflight.fail(rid, RequestTimeout(f"no reply to {rid!r} from {self.info.endpoint} "
                                                        "before its deadline"))
            for rid in self._inflight.silent_since(now, self._last_heard, HEARTBEAT_TIMEOUT_S):
                self._inflight.fail(rid, PeerUnavailable(
                    f"{self.info.endpoint} did not answer for {HEARTBEAT_TIMEOUT_S:.1f}s (heartbeats missed)"))


class RdmaServer(ServerChannel):
    """Server side over RDMA: accepts connections on rdma_port, one receive + one sender thread each."""

    def __init__(self, host: str, port: int, handler: Handler, *, device: str | None = None,
                 max_message_bytes: int = DEFAULT_MAX_BYTES, window: int = DEFAULT_WINDOW,
                 slot_bytes: int = DEFAULT_SLOT_BYTES, observer: ChannelObserver | None = None) -> None:
        self.info = ChannelInfo("rdma", f"rdma://{host}:{port}")
        self._host, self._port, self._device = host, port, device
        self._handler = handler
        self._max_bytes, self._window, self._slot = max_message_bytes, window, slot_bytes
        self._obs = observer or ChannelObserver()
        self._closed = threading.Event()
        self._conns: list[Connection] = []

    def start(self) -> str:
        self.info.reason = f"device {probe(self._device)}"
        v = self._v = verbs()
        try:
            ai = v.cmid.AddrInfo(src=self._host, src_service=str(self._port), port_space=v.cm.RDMA_PS_TCP,
                                 flags=v.cm.RAI_PASSIVE)
            self._listen_id = v.cmid.CMID(creator=ai, qp_init_attr=qp_init_attr(v, self._window))
            self._listen_id.listen()
        except v.errors.PyverbsError as exc:
            raise RdmaUnavailable(f"cannot listen for RDMA on {self._host}:{self._port}: {exc}") from exc
        threading.Thread(target=self._accept_loop, name="rdma-accept", daemon=True).start()
        return self.info.endpoint

    def close(self) -> None:
        self._closed.set()
        for conn in self._conns:
            conn.close()
        try:
            self._listen_id.close()
        except (AttributeError, self._v.errors.PyverbsError):
            pass

    def _accept_loop(self) -> None:
        v = self._v
        while not self._closed.is_set():
            try:
                cmid = self._listen_id.get_request()
                conn = Connection(v, cmid, window=self._window, slot_bytes=self._slot,
                                   max_bytes=self._max_bytes, name=f"{self.info.endpoint} peer")
                cmid.accept(v.cmid.ConnParam())
                conn.send_hello()
            except (v.errors.PyverbsError, TransportError) as exc:
                if not self._closed.is_set():
                    log.warning("RDMA accept on %s failed: %s", self.info.endpoint, exc)
                continue
            self._conns.append(conn)
            replies: queue.Queue[Frame] = queue.Queue(REPLY_QUEUE_MAX)
            threading.Thread(target=self._sender_loop, args=(conn, replies), daemon=True).start()
            threading.Thread(target=self._receive_loop, args=(conn, replies), daemon=True).start()

    def _receive_loop(self, conn: Connection, replies: queue.Queue[Frame]) -> None:
        while not self._closed.is_set() and not conn.broken:
            try:
                message = conn.receive()
            except PeerUnavailable:
                break
            except FrameError as exc:
                self._obs.on_malformed(error_code(exc))
                replies.put(error_frame("", error_code(exc), str(exc)))
                continue
            if message is None:
                continue
            self._obs.on_bytes("in", message.nbytes)
            try:
                frame = unpack(message, self._max_bytes)
            except FrameError as exc:
                self._obs.on_malformed(error_code(exc))
                rid = ""
                try:
                    rid = decode_header(message[16:16 + int.from_bytes(message[4:8], "little")])["id"]
                except FrameError:
                    pass
                replies.put(error_frame(rid, error_code(exc), str(exc)))
                continue
            if frame.kind == HEARTBEAT_KIND:
                replies.put(Frame(kind=HEARTBEAT_REPLY_KIND, request_id=frame.request_id))
                continue
            try:
                self._handler(frame, replies.put)
            except Exception as exc:
                log.exception("handler failed on %s %r", frame.kind, frame.request_id)
                replies.put(error_frame(frame.request_id, "internal", f"{type(exc).__name__}: {exc}"))
        replies.put(Frame(kind="_stop", request_id=""))

    def _sender_loop(self, conn: Connection, replies: queue.Queue[Frame]) -> None:
        # Replies go out from here, never from the receive thread: a receive thread blocked on
        # credits would stop publishing ours, and both peers could wait on each other.
        while True:
            frame = replies.get()
            if frame.kind == "_stop":
                return
            try:
                conn.send_frame(frame, SEND_TIMEOUT_S)
                self._obs.on_bytes("out", frame.nbytes)
            except TransportError as exc:
                self._obs.on_dropped_reply("peer_gone")
                log.warning("reply %r dropped: %s", frame.request_id, exc)
