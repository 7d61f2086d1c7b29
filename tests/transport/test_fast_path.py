"""The TCP channel's small-message fast path: busy-poll windows, callers reading their own
replies, and the frame codec's lookup tables (byte order, odd dtypes)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import zmq

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


def test_replies_held_back_by_a_full_peer_do_not_keep_the_server_spinning() -> None:
    """A client that stops reading fills the server's reply queue: the server waits (1 ms
    retries) instead of busy-polling, and every held reply is delivered once the client reads."""
    server = TcpServer("tcp://127.0.0.1:0", echo, hwm=1)
    server.start()
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger, sock.rcvhwm, sock.rcvtimeo = 0, 1, 5000
    sock.connect(server.info.endpoint)
    n, payload = 300, np.zeros(64 * 1024, np.uint8)  # ~19 MiB of replies: more than socket buffers hold
    try:
        for i in range(n):
            sock.send_multipart(encode(Frame("q", f"h{i}", tensors={"a": payload})), copy=False)
        time.sleep(0.5)  # the server reads what it can and gets stuck on replies
        cpu0, wall0 = time.process_time(), time.monotonic()
        time.sleep(1.0)
        busy = (time.process_time() - cpu0) / (time.monotonic() - wall0)
        got = [json.loads(sock.recv_multipart()[0])["id"] for _ in range(n)]
    finally:
        sock.close()
        server.close()
    assert got == [f"h{i}" for i in range(n)]
    print(f"server CPU while held back: {busy:.1%}")
    assert busy < 0.25, f"the server used {busy:.0%} of a CPU while its peer read nothing"
