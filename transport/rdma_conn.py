"""RDMA connection internals for transport.rdma: device probe, registered slots, chunked SENDs
under credits, the receive path. NOT RUN ON RDMA HARDWARE (see transport/rdma.py).
"""

from __future__ import annotations

import collections
import ctypes
import logging
import threading
from collections.abc import Callable
from typing import Any

from transport.errors import PeerUnavailable, RdmaUnavailable
from transport.frames import Frame
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
    write_chunk_header,
)

DEFAULT_WINDOW = 16                 # receive slots per connection = send credits of the peer
DEFAULT_SLOT_BYTES = 1 << 20        # 1 MiB per slot: 16 MiB registered per direction
SEND_TIMEOUT_S = 10.0               # longest wait for a credit before the peer counts as stuck

log = logging.getLogger("transport.rdma")


def verbs() -> Any:
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
    v = verbs()
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


def qp_init_attr(v: Any, window: int) -> Any:
    cap = v.qp.QPCap(max_send_wr=2 * window + 4, max_recv_wr=window, max_send_sge=1, max_recv_sge=1)
    return v.qp.QPInitAttr(qp_type=v.enums.IBV_QPT_RC, cap=cap, sq_sig_all=1)


def _mr_view(mr: Any) -> memoryview:
    return memoryview((ctypes.c_char * mr.length).from_address(mr.buf)).cast("B")


class Connection:
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
            self._free_send_mr_slot()
        return self.free_send_mrs.popleft()

    def publish_credits(self, at_message_end: bool) -> None:
        if self.peer_counter is None or not self.reposts.should_publish(at_message_end):
            return
        addr, rkey = self.peer_counter
        with self.post_lock:
            ctypes.c_uint64.from_address(self.publish_mr.buf).value = self.reposts.published()
            if len(self.outstanding) >= 2 * self.window:  # keep the send queue within max_send_wr
                self._free_send_mr_slot()
            self._post(lambda: self.cmid.post_write(self.publish_mr, 8, addr, rkey, self.v.enums.IBV_SEND_SIGNALED))
            self.outstanding.append(None)

    def _free_send_mr_slot(self) -> None:
        """Reap the oldest send-queue completion (SQ completions arrive in posting order)."""
        wc = None
        while wc is None:  # pyverbs returns None when the CQ had nothing after a wake-up
            wc = self._post(self.cmid.get_send_comp)
        if wc.status != self.v.enums.IBV_WC_SUCCESS:
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
        self.publish_credits(at_message_end=message is not None)
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
