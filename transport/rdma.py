"""RDMA channel over pyverbs: rdma_cm connection, one RC queue pair, registered slots, credits.

NOT RUN ON RDMA HARDWARE. The machines this was written on have no RDMA device (not even
SoftRoCE); `probe()` and the fallback around it ran, the data path below did not. What ran
here as pure code: the wire layout, chunking, reassembly and credit accounting
(`transport.layout`, tests/transport/test_layout.py).

Design (same interface as `transport.tcp`):
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

import collections
import ctypes
import logging
import queue
import threading
import time
from collections.abc import Callable
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
from transport.layout import (
    CHUNK_HEADER,
    FLAG_FIRST,
    FLAG_HELLO,
    FLAG_LAST,
    HELLO,
    CreditWindow,
    Reassembler,
    RepostCounter,
    chunk_payload_bytes,
    iter_chunks,
    pack_into,
    packed_size,
    unpack,
    write_chunk_header,
)

DEFAULT_WINDOW = 16                 # receive slots per connection = send credits of the peer
DEFAULT_SLOT_BYTES = 1 << 20        # 1 MiB per slot: 16 MiB registered per direction
SEND_TIMEOUT_S = 10.0               # longest wait for a credit before the peer counts as stuck
REPLY_QUEUE_MAX = 256               # server: replies waiting for the connection's sender thread

log = logging.getLogger("transport.rdma")


def _verbs() -> Any:
    """Import pyverbs lazily: its absence is a reason to fall back, never an import error here."""
    try:
        import pyverbs.pyverbs_error as errors
        from pyverbs import cm_enums, cmid, device, enums, qp
    except ImportError as exc:
        raise RdmaUnavailable(f"pyverbs is not importable ({exc}); install Debian's python3-pyverbs "
                              "(rdma-core) and run bootstrap.sh so the venv sees it") from exc
    return type("Verbs", (), {"cm": cm_enums, "cmid": cmid, "device": device, "enums": enums,
                              "errors": errors, "qp": qp})


def probe(device: str | None = None) -> str:
    """Name of the RDMA device to use, or RdmaUnavailable saying why there is none."""
    v = _verbs()
    try:
        devices = v.device.get_device_list()
    except v.errors.PyverbsError as exc:
        raise RdmaUnavailable(f"no RDMA device: ibv_get_device_list failed ({exc}); the kernel has no "
                              "RDMA driver loaded (no /sys/class/infiniband)") from exc
    names = [d.name.decode() if isinstance(d.name, bytes) else str(d.name) for d in devices]
    if not names:
        raise RdmaUnavailable("no RDMA device: ibv_get_device_list returned an empty list")
    if device is not None and device not in names:
        raise RdmaUnavailable(f"RDMA device {device!r} (transport.rdma.device) not found; present: {names}")
    return device or names[0]


def _qp_init_attr(v: Any, window: int) -> Any:
    cap = v.qp.QPCap(max_send_wr=2 * window + 4, max_recv_wr=window, max_send_sge=1, max_recv_sge=1)
    return v.qp.QPInitAttr(qp_type=v.enums.IBV_QPT_RC, cap=cap, sq_sig_all=1)


def _mr_view(mr: Any) -> memoryview:
    return memoryview((ctypes.c_char * mr.length).from_address(mr.buf)).cast("B")


class _Connection:
    """One connected RC QP: registered slots, chunked SENDs under credits, a receive thread."""

    def __init__(self, v: Any, cmid: Any, *, window: int, slot_bytes: int, max_bytes: int, name: str) -> None:
        self.v, self.cmid, self.window, self.slot_bytes, self.name = v, cmid, window, slot_bytes, name
        self.max_bytes = max_bytes
        self.recv_mrs = [cmid.reg_msgs(slot_bytes) for _ in range(window)]
        self.free_send_mrs: collections.deque[Any] = collections.deque(cmid.reg_msgs(slot_bytes) for _ in range(window))
        self.counter_mr = cmid.reg_write(8)   # the peer writes its repost count here
        self.publish_mr = cmid.reg_msgs(8)    # source of our repost count for the RDMA WRITE
        ctypes.c_uint64.from_address(self.counter_mr.buf).value = 0
        self.posted: collections.deque[Any] = collections.deque()
        for mr in self.recv_mrs:  # before connect/accept, so the peer's first SEND finds a slot
            cmid.post_recv(mr, slot_bytes)
            self.posted.append(mr)
        self.credits = CreditWindow(window)
        self.reposts = RepostCounter(window)
        self.reasm = Reassembler(max_bytes)
        self.peer_counter: tuple[int, int] | None = None  # (address, rkey) from the HELLO
        self.outstanding: collections.deque[Any] = collections.deque()  # send MR or None (a WRITE)
        self.msg_lock = threading.Lock()   # one message's chunks at a time; held across credit waits
        self.post_lock = threading.Lock()  # QP posting + send-completion reaping; never held while waiting
        self.seq = 0
        self.broken = ""

    def read_counter(self) -> int:
        return int(ctypes.c_uint64.from_address(self.counter_mr.buf).value)

    def send_hello(self) -> None:
        body = HELLO.pack(self.counter_mr.buf, self.counter_mr.rkey, self.window)
        self._send_chunk(FLAG_HELLO | FLAG_FIRST | FLAG_LAST, 0, len(body), memoryview(body), SEND_TIMEOUT_S)

    def send_frame(self, frame: Frame, timeout_s: float) -> None:
        total = packed_size(frame)
        with self.msg_lock:
            self.seq += 1
            step = chunk_payload_bytes(self.slot_bytes)
            # One chunk: pack straight into the registered slot. Several: pack once into a staging buffer.
            staging = memoryview(bytearray(total)) if total > step else None
            if staging is not None:
                pack_into(frame, staging)
            for flags, offset, length in iter_chunks(total, self.slot_bytes):
                self._send_chunk(flags, offset, total, staging[offset:offset + length] if staging is not None
                                 else frame, timeout_s)

    def _send_chunk(self, flags: int, offset: int, total: int, payload: memoryview | Frame, timeout_s: float) -> None:
        self.credits.take(self.read_counter, timeout_s)
        with self.post_lock:
            mr = self._free_send_mr()
            view = _mr_view(mr)
            write_chunk_header(view, flags, self.seq, offset, total)
            if isinstance(payload, Frame):
                length = pack_into(payload, view[CHUNK_HEADER.size:])
            else:
                length = payload.nbytes
                view[CHUNK_HEADER.size:CHUNK_HEADER.size + length] = payload
            self._post(lambda: self.cmid.post_send(mr, self.v.enums.IBV_SEND_SIGNALED, CHUNK_HEADER.size + length))
            self.outstanding.append(mr)

    def _free_send_mr(self) -> Any:
        while not self.free_send_mrs:
            wc = self._post(self.cmid.get_send_comp)
            if wc is not None and wc.status != self.v.enums.IBV_WC_SUCCESS:
                self.fail(f"send completion error status {wc.status} on {self.name}")
                raise PeerUnavailable(self.broken)
            done = self.outstanding.popleft()
            if done is not None:
                self.free_send_mrs.append(done)
        return self.free_send_mrs.popleft()

    def publish_credits(self, idle: bool) -> None:
        if self.peer_counter is None or not self.reposts.should_publish(idle):
            return
        addr, rkey = self.peer_counter
        with self.post_lock:
            ctypes.c_uint64.from_address(self.publish_mr.buf).value = self.reposts.published()
            if len(self.outstanding) >= 2 * self.window:  # keep the send queue within max_send_wr
                self._free_send_mr_slot()
            self._post(lambda: self.cmid.post_write(self.publish_mr, 8, addr, rkey, self.v.enums.IBV_SEND_SIGNALED))
            self.outstanding.append(None)

    def _free_send_mr_slot(self) -> None:
        wc = self._post(self.cmid.get_send_comp)
        if wc is not None and wc.status != self.v.enums.IBV_WC_SUCCESS:
            self.fail(f"completion error status {wc.status} on {self.name}")
            raise PeerUnavailable(self.broken)
        done = self.outstanding.popleft()
        if done is not None:
            self.free_send_mrs.append(done)

    def _post(self, op: Callable[[], Any]) -> Any:
        if self.broken:
            raise PeerUnavailable(self.broken)
        try:
            return op()
        except self.v.errors.PyverbsError as exc:
            self.fail(f"verbs operation failed on {self.name}: {exc}")
            raise PeerUnavailable(self.broken) from exc

    def receive(self) -> memoryview | None:
        """Block for the next chunk; returns a complete message or None (HELLO / partial)."""
        try:
            wc = self.cmid.get_recv_comp()
        except self.v.errors.PyverbsError as exc:
            self.fail(f"receive failed on {self.name}: {exc}")
            raise PeerUnavailable(self.broken) from exc
        if wc is None:
            return None
        if wc.status != self.v.enums.IBV_WC_SUCCESS:
            self.fail(f"{self.name}: receive completion status {wc.status} (peer disconnected or unreachable)")
            raise PeerUnavailable(self.broken)
        mr = self.posted.popleft()  # RC: receive WRs complete in the order they were posted
        chunk = _mr_view(mr)[:wc.byte_len]
        try:
            if CHUNK_HEADER.unpack_from(chunk, 0)[1] & FLAG_HELLO:
                addr, rkey, _window = HELLO.unpack_from(chunk, CHUNK_HEADER.size)
                self.peer_counter = (addr, rkey)
                message = None
            else:
                message = self.reasm.feed(chunk)  # copies the payload out of the slot
        finally:
            self._post(lambda: self.cmid.post_recv(mr, self.slot_bytes))
            self.posted.append(mr)
            self.reposts.reposted()
        self.publish_credits(idle=message is not None)
        return message

    def fail(self, reason: str) -> None:
        if not self.broken:
            self.broken = reason
            self.credits.break_(reason)
            log.warning("RDMA connection lost: %s", reason)

    def close(self) -> None:
        self.fail(f"{self.name} closed")
        try:
            self.cmid.disconnect()
        except self.v.errors.PyverbsError:
            pass
        self.cmid.close()


class RdmaClient(ClientChannel):
    """Client side over RDMA. Raises RdmaUnavailable if no device or no connection in time."""

    def __init__(self, host: str, port: int, *, device: str | None = None, connect_timeout_s: float = 2.0,
                 max_message_bytes: int = DEFAULT_MAX_BYTES, window: int = DEFAULT_WINDOW,
                 slot_bytes: int = DEFAULT_SLOT_BYTES, max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
                 reason: str = "") -> None:
        self.info = ChannelInfo("rdma", f"rdma://{host}:{port}", reason)
        dev = probe(device)
        self._v = _verbs()
        self._inflight = InFlight(max_in_flight)
        self._closed = threading.Event()
        self._last_heard = time.monotonic()
        box: dict[str, Any] = {}

        def connect() -> None:
            try:
                v = self._v
                ai = v.cmid.AddrInfo(dst=host, dst_service=str(port), port_space=v.cm.RDMA_PS_TCP)
                cmid = v.cmid.CMID(creator=ai, qp_init_attr=_qp_init_attr(v, window))
                conn = _Connection(v, cmid, window=window, slot_bytes=slot_bytes, max_bytes=max_message_bytes,
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
        self._conn: _Connection = box["conn"]
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
        self._conns: list[_Connection] = []

    def start(self) -> str:
        self.info.reason = f"device {probe(self._device)}"
        v = self._v = _verbs()
        try:
            ai = v.cmid.AddrInfo(src=self._host, src_service=str(self._port), port_space=v.cm.RDMA_PS_TCP,
                                 flags=v.cm.RAI_PASSIVE)
            self._listen_id = v.cmid.CMID(creator=ai, qp_init_attr=_qp_init_attr(v, self._window))
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
                conn = _Connection(v, cmid, window=self._window, slot_bytes=self._slot,
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

    def _receive_loop(self, conn: _Connection, replies: queue.Queue[Frame]) -> None:
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

    def _sender_loop(self, conn: _Connection, replies: queue.Queue[Frame]) -> None:
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
