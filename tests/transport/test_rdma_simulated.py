"""transport.rdma_conn.Connection over a SIMULATED queue pair (tests/transport/fake_verbs.py).

What this checks: slot registration and reuse, HELLO exchange, chunking of large frames into
slots, reassembly, credits published by RDMA WRITE (a SEND never finds the peer without a
posted receive), both directions at once, and a disconnect failing the sender. What it does
NOT check: pyverbs' real API, rdma_cm, or any hardware — none of that ran here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

from tests.transport.fake_verbs import VERBS, FakeCMID
from transport.errors import PeerUnavailable
from transport.frames import Frame
from transport.layout import unpack
from transport.rdma_conn import Connection

WINDOW, SLOT = 4, 4096  # small, so frames span many slots and credits run out often


class Side:
    """A Connection with a thread that collects complete messages as frames."""

    def __init__(self, cmid: FakeCMID, name: str) -> None:
        self.conn = Connection(VERBS, cmid, window=WINDOW, slot_bytes=SLOT, max_bytes=1 << 24, name=name)
        self.frames: list[Frame] = []
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.conn.broken:
            try:
                message = self.conn.receive()
            except PeerUnavailable as exc:
                self.error = exc
                return
            if message is not None:
                self.frames.append(unpack(message, 1 << 24))


@pytest.fixture
def pair() -> Iterator[tuple[Side, Side]]:
    a_id, b_id = FakeCMID.pair()
    a, b = Side(a_id, "a"), Side(b_id, "b")
    for s in (a, b):
        s.thread.start()
        s.conn.send_hello()
    yield a, b
    for s in (a, b):
        s.conn.fail("test over")
        s.thread.join(2)


def _frame(i: int, nbytes: int) -> Frame:
    data = np.random.default_rng(i).integers(0, 255, nbytes, dtype=np.uint8)
    return Frame("tryon", f"m{i}", {"i": i}, {"data": data, "kp": np.full((25, 3), i, np.float32)})


def test_frames_of_many_sizes_both_directions(pair: tuple[Side, Side]) -> None:
    a, b = pair
    sizes = [0, 10, SLOT - 200, SLOT * 3 + 17, 200_000]
    sent_ab = [_frame(i, n) for i, n in enumerate(sizes)]
    sent_ba = [_frame(100 + i, n) for i, n in enumerate(reversed(sizes))]
    t = threading.Thread(target=lambda: [b.conn.send_frame(f, 5.0) for f in sent_ba])
    t.start()
    for f in sent_ab:
        a.conn.send_frame(f, 5.0)
    t.join(10)
    for receiver, sent in ((b, sent_ab), (a, sent_ba)):
        deadline = threading.Event()
        for _ in range(200):
            if len(receiver.frames) == len(sent):
                break
            deadline.wait(0.02)
        assert [f.request_id for f in receiver.frames] == [f.request_id for f in sent]
        for got, want in zip(receiver.frames, sent, strict=True):
            np.testing.assert_array_equal(got.tensors["data"], want.tensors["data"])
            np.testing.assert_array_equal(got.tensors["kp"], want.tensors["kp"])
    # 200 kB through 4 slots of 4 KiB: only possible because credits came back by RDMA WRITE
    assert a.conn.credits.sent > 50 and a.conn.reposts.count > 50
    assert a.conn.cmid.rnr_violations == 0 and b.conn.cmid.rnr_violations == 0


def test_registered_memory_is_reused(pair: tuple[Side, Side]) -> None:
    a, b = pair
    mrs_before = {id(m) for m in a.conn.free_send_mrs} | {id(m) for m in b.conn.recv_mrs}
    for i in range(20):
        a.conn.send_frame(_frame(i, SLOT * 2), 5.0)
    assert {id(m) for m in a.conn.free_send_mrs} | {id(m) for m in b.conn.recv_mrs} <= mrs_before | {
        id(m) for m in a.conn.outstanding}


def test_disconnect_fails_sender_and_receiver(pair: tuple[Side, Side]) -> None:
    a, b = pair
    a.conn.send_frame(_frame(1, 10), 5.0)
    b.conn.cmid.disconnect()
    a.thread.join(2)
    # the flushed receive or the failed credit WRITE, whichever a notices first
    assert isinstance(a.error, PeerUnavailable) and ("receive completion status" in str(a.error)
                                                     or "connection is gone" in str(a.error))
    with pytest.raises(PeerUnavailable):
        a.conn.send_frame(_frame(2, SLOT * 8), 1.0)


def test_stalled_receiver_pushes_back() -> None:
    """A receiver that stops reposting stops the sender after `window` chunks (no RNR, a typed error)."""
    a_id, b_id = FakeCMID.pair()
    a = Connection(VERBS, a_id, window=WINDOW, slot_bytes=SLOT, max_bytes=1 << 24, name="a")
    Connection(VERBS, b_id, window=WINDOW, slot_bytes=SLOT, max_bytes=1 << 24, name="b")  # never receives
    with pytest.raises(PeerUnavailable, match="no send credit"):
        a.send_frame(_frame(1, SLOT * 10), 0.3)
    assert a.credits.sent == WINDOW and b_id.rnr_violations == 0


def test_rdma_client_and_server_over_simulated_cm(monkeypatch: pytest.MonkeyPatch, free_port: int) -> None:
    """RdmaClient <-> RdmaServer (threads, HELLO, handler dispatch, heartbeats' pongs, malformed-free
    round trips) with pyverbs replaced by the simulation above."""
    import transport.rdma as rdma
    import transport.rdma_conn as rdma_conn
    from tests.transport.fake_verbs import CM_VERBS

    monkeypatch.setattr(rdma, "verbs", lambda: CM_VERBS)
    monkeypatch.setattr(rdma_conn, "verbs", lambda: CM_VERBS)
    monkeypatch.setattr(rdma, "probe", lambda device=None: "simulated0")

    def handler(frame: Frame, reply) -> None:  # type: ignore[no-untyped-def]
        threading.Timer(0.01, reply, args=(Frame("echo", frame.request_id, tensors=dict(frame.tensors)),)).start()

    server = rdma.RdmaServer("127.0.0.1", free_port, handler, window=WINDOW, slot_bytes=SLOT)
    server.start()
    client = rdma.RdmaClient("127.0.0.1", free_port, window=WINDOW, slot_bytes=SLOT, connect_timeout_s=2)
    try:
        assert client.info.backend == "rdma"
        futs = [client.submit(_frame(i, n), 10) for i, n in enumerate([5, SLOT * 5, 50_000, 0])]
        for i, f in enumerate(futs):
            r = f.result(timeout=10)
            assert r.kind == "echo" and r.request_id == f"m{i}"
        r = client.request(_frame(9, 123_457), 10)
        np.testing.assert_array_equal(r.tensors["data"], _frame(9, 123_457).tensors["data"])
    finally:
        client.close()
        server.close()
    with pytest.raises(rdma.RdmaUnavailable, match="connection refused"):
        rdma.RdmaClient("127.0.0.1", free_port, connect_timeout_s=1)
