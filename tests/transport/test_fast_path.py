"""The TCP channel's small-message fast path: busy-poll windows, callers reading their own
replies, and the frame codec's lookup tables (byte order, odd dtypes)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.transport.conftest import echo
from transport.errors import DtypeNotAllowed
from transport.frames import Frame, decode, encode
from transport.tcp import TcpClient
from transport.tcp_server import TcpServer


@pytest.mark.parametrize("spin_s", [0.0, 0.0005])
def test_roundtrips_with_and_without_busy_poll(spin_s: float) -> None:
    """spin 0 = the blocking path only (poll on zmq's fd); both give every reply to its caller."""
    server = TcpServer("tcp://127.0.0.1:0", echo, spin_s=spin_s)
    server.start()
    try:
        with TcpClient(server.info.endpoint, caller_spin_s=spin_s) as c:
            for i in range(50):
                r = c.request(Frame("q", f"s{i}", {"i": i}, {"v": np.full(1024, i, np.int32)}), 5.0)
                assert (r.request_id, r.meta["i"], int(r.tensors["v"][-1])) == (f"s{i}", i, i)
    finally:
        server.close()


def test_reply_slower_than_the_spin_window_is_still_read() -> None:
    """The caller spins 0.5 ms, then blocks on the socket fd: a 100 ms reply still arrives."""
    def slow(frame: Frame, reply: Callable[[Frame], None]) -> None:
        threading.Timer(0.1, reply, args=(Frame("slow", frame.request_id),)).start()

    server = TcpServer("tcp://127.0.0.1:0", slow)
    server.start()
    try:
        with TcpClient(server.info.endpoint) as c:
            assert [c.request(Frame("q", f"w{i}"), 5.0).kind for i in range(3)] == ["slow"] * 3
    finally:
        server.close()


def test_futures_nobody_reads_for_complete_after_readers_leave(echo_server: TcpServer) -> None:
    """submit() futures are read by the I/O thread once no request() caller reads any more
    (callers wake it when they leave), and by the callers while they are there."""
    with TcpClient(echo_server.info.endpoint) as c, ThreadPoolExecutor(2) as pool:
        for rnd in range(5):
            futs = [c.submit(Frame("q", f"f{rnd}.{i}"), 5.0) for i in range(8)]
            blocking = pool.submit(c.request, Frame("q", f"b{rnd}"), 5.0)
            assert blocking.result(timeout=5).request_id == f"b{rnd}"
            assert [f.result(timeout=5).request_id for f in futs] == [f"f{rnd}.{i}" for i in range(8)]
        # and with no request() caller at all
        assert c.submit(Frame("q", "alone"), 5.0).result(timeout=5).request_id == "alone"


def test_non_native_byte_order_is_sent_as_values() -> None:
    big = np.arange(6, dtype=">u2").reshape(2, 3)
    parts = encode(Frame("q", "be", tensors={"a": big, "f": np.array([1.5, -2.0], dtype=">f8")}))
    out = decode([p.tobytes() if isinstance(p, np.ndarray) else p for p in parts])
    assert out.tensors["a"].dtype == np.dtype("uint16") and out.tensors["a"].tolist() == big.tolist()
    assert out.tensors["f"].tolist() == [1.5, -2.0]


def test_unhashable_dtype_in_a_header_is_a_dtype_error() -> None:
    header = b'{"v":1,"kind":"q","id":"x","meta":{},"tensors":[{"name":"a","dtype":["uint8"],"shape":[1]}]}'
    with pytest.raises(DtypeNotAllowed, match=r"\['uint8'\]"):
        decode([header, b"\x00"])
