"""A simulated RC queue pair, to run transport.rdma_conn's bookkeeping where no RDMA device exists.

It is NOT pyverbs and says nothing about real hardware or the pyverbs API: it implements the
few CMID calls `Connection` makes (reg_msgs/reg_write, post_recv/post_send/post_write,
get_recv_comp/get_send_comp, disconnect/close) with the semantics the code relies on — receive
WRs complete in posting order, a SEND needs a posted receive on the peer, an RDMA WRITE lands
in the peer's registered memory without a completion there. A SEND arriving with no posted
receive is recorded as an RNR violation (the credit logic must make that impossible).
"""

from __future__ import annotations

import ctypes
import itertools
import queue
import threading
from collections import deque
from dataclasses import dataclass
from types import SimpleNamespace

IBV_SEND_SIGNALED = 2
IBV_WC_SUCCESS = 0
IBV_WC_WR_FLUSH_ERR = 5
RECV_POLL_S = 0.05


class FakeVerbsError(Exception):
    """Stands in for pyverbs.pyverbs_error.PyverbsError."""


VERBS = SimpleNamespace(
    enums=SimpleNamespace(IBV_SEND_SIGNALED=IBV_SEND_SIGNALED, IBV_WC_SUCCESS=IBV_WC_SUCCESS, IBV_QPT_RC=2),
    errors=SimpleNamespace(PyverbsError=FakeVerbsError),
)
_rkeys = itertools.count(1)
_memory: dict[int, tuple[int, int]] = {}  # rkey -> (address, length) of remote-writable regions


class FakeMR:
    def __init__(self, size: int, remote_write: bool = False) -> None:
        self._mem = ctypes.create_string_buffer(size)
        self.buf = ctypes.addressof(self._mem)
        self.length = size
        self.rkey = next(_rkeys)
        if remote_write:
            _memory[self.rkey] = (self.buf, size)


@dataclass
class WC:
    status: int
    byte_len: int = 0


class FakeCMID:
    """One end of a simulated RC connection; `pair()` makes two connected ends."""

    def __init__(self) -> None:
        self.peer: FakeCMID | None = None
        self.posted: deque[tuple[FakeMR, int]] = deque()
        self.recv_cq: queue.Queue[WC] = queue.Queue()
        self.send_cq: queue.Queue[WC] = queue.Queue()
        self.lock = threading.Lock()
        self.rnr_violations = 0
        self.closed = False

    @staticmethod
    def pair() -> tuple[FakeCMID, FakeCMID]:
        a, b = FakeCMID(), FakeCMID()
        a.peer, b.peer = b, a
        return a, b

    def reg_msgs(self, size: int) -> FakeMR:
        return FakeMR(size)

    def reg_write(self, size: int) -> FakeMR:
        return FakeMR(size, remote_write=True)

    def post_recv(self, mr: FakeMR, length: int) -> None:
        if self.closed:
            raise FakeVerbsError("post_recv on a closed QP")
        with self.lock:
            self.posted.append((mr, length))

    def post_send(self, mr: FakeMR, flags: int, length: int) -> None:
        peer = self._live_peer()
        with peer.lock:
            if not peer.posted:
                peer.rnr_violations += 1
                raise FakeVerbsError("RNR: the peer has no receive posted (credit accounting broken)")
            slot, room = peer.posted.popleft()
        if length > room:
            raise FakeVerbsError(f"SEND of {length} bytes into a {room}-byte receive")
        ctypes.memmove(slot.buf, mr.buf, length)
        peer.recv_cq.put(WC(IBV_WC_SUCCESS, length))
        self.send_cq.put(WC(IBV_WC_SUCCESS, length))

    def post_write(self, mr: FakeMR, length: int, remote_addr: int, rkey: int, flags: int) -> None:
        self._live_peer()
        addr, size = _memory[rkey]
        if not addr <= remote_addr <= addr + size - length:
            raise FakeVerbsError("RDMA WRITE outside the remote region")
        ctypes.memmove(remote_addr, mr.buf, length)
        self.send_cq.put(WC(IBV_WC_SUCCESS, length))

    def get_send_comp(self) -> WC:
        return self.send_cq.get(timeout=5)

    def get_recv_comp(self) -> WC | None:
        try:
            return self.recv_cq.get(timeout=RECV_POLL_S)
        except queue.Empty:
            return None

    def disconnect(self) -> None:
        self.closed = True
        if self.peer is not None:  # the peer's posted receives flush with an error
            self.peer.recv_cq.put(WC(IBV_WC_WR_FLUSH_ERR))
        self.recv_cq.put(WC(IBV_WC_WR_FLUSH_ERR))

    def close(self) -> None:
        self.closed = True

    def _live_peer(self) -> FakeCMID:
        if self.closed or self.peer is None or self.peer.closed:
            raise FakeVerbsError("QP in error state: the connection is gone")
        return self.peer


# -- a simulated rdma_cm (synchronous CMID API as transport.rdma uses it) -------------------------
RAI_PASSIVE = 1
_listeners: dict[str, queue.Queue[ActiveCMID]] = {}


class AddrInfo:
    def __init__(self, src: str | None = None, dst: str | None = None, src_service: str | None = None,
                 dst_service: str | None = None, port_space: int = 0, flags: int = 0) -> None:
        self.service = src_service if flags & RAI_PASSIVE else dst_service
        self.passive = bool(flags & RAI_PASSIVE)


class ActiveCMID(FakeCMID):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self.accepted = threading.Event()

    def connect(self, param: object) -> None:
        if self.service not in _listeners:
            raise FakeVerbsError(f"connection refused on port {self.service}")
        _listeners[self.service].put(self)
        if not self.accepted.wait(5):
            raise FakeVerbsError("no accept")


class PassiveCMID(FakeCMID):
    def accept(self, param: object) -> None:
        assert isinstance(self.peer, ActiveCMID)
        self.peer.accepted.set()


class ListenCMID:
    def __init__(self, service: str) -> None:
        self.service = service

    def listen(self) -> None:
        _listeners[self.service] = queue.Queue()

    def get_request(self) -> PassiveCMID:
        while True:
            q = _listeners.get(self.service)
            if q is None:
                raise FakeVerbsError("listener closed")
            try:
                active = q.get(timeout=RECV_POLL_S)
            except queue.Empty:
                continue
            passive = PassiveCMID()
            passive.peer, active.peer = active, passive
            return passive

    def close(self) -> None:
        _listeners.pop(self.service, None)


def _cmid(creator: AddrInfo, qp_init_attr: object = None) -> FakeCMID | ListenCMID:
    return ListenCMID(str(creator.service)) if creator.passive else ActiveCMID(str(creator.service))


CM_VERBS = SimpleNamespace(
    enums=VERBS.enums, errors=VERBS.errors,
    cm=SimpleNamespace(RDMA_PS_TCP=0x106, RAI_PASSIVE=RAI_PASSIVE),
    cmid=SimpleNamespace(AddrInfo=AddrInfo, CMID=_cmid, ConnParam=object),
    qp=SimpleNamespace(QPCap=SimpleNamespace, QPInitAttr=SimpleNamespace),
)
