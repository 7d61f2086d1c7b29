"""The fault-injecting proxy itself, then real node-1 <-> node-2 channels through it.

Bytes are checked end to end; delays, bandwidth and cuts are checked against lower bounds that
the fault itself imposes (a loaded machine can only make things slower, never faster), and
upper bounds only with wide margins where the test is about failing fast.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

import gvirtus
from gvirtus.testing import BackendProcess
from node1.tryon.distributed import REMOTE_CALL_TIMEOUT_S
from testing.faultproxy import FaultProxy, ProxyError
from transport import Frame, PeerUnavailable, TcpClient, TcpServer
from transport.base import HEARTBEAT_TIMEOUT_S

FAIL_FAST_MARGIN_S = 2.5   # on top of the component's own deadline, for a loaded 2-core machine


class EchoServer:
    """A plain TCP echo server on loopback (one thread per connection)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(65536):
                    conn.sendall(data)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(("127.0.0.1", echo.port), seed=1) as p:
        yield p


def _roundtrip(port: int, payload: bytes, timeout_s: float = 10.0) -> tuple[bytes, float]:
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    return got, time.monotonic() - t0


def test_forwards_bytes_exactly_and_counts_them(proxy: FaultProxy) -> None:
    payload = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    got, _ = _roundtrip(proxy.port, payload)
    assert got == payload
    st = proxy.stats()
    assert st.accepted == 1 and st.bytes_up == st.bytes_down == len(payload)


def test_delay_loss_and_bandwidth_slow_the_link_down(proxy: FaultProxy) -> None:
    proxy.set(delay_s=0.15)
    got, rtt = _roundtrip(proxy.port, b"ping")
    assert got == b"ping" and rtt >= 0.3                 # 0.15 s each way
    proxy.set(delay_s=0.0, loss=1.0, rto_s=0.25)          # every chunk "lost" once: one RTO each way
    got, rtt = _roundtrip(proxy.port, b"ping")
    assert got == b"ping" and rtt >= 0.5 and proxy.stats().chunks_lost >= 2
    proxy.set(loss=0.0, bandwidth_bps=4e6)                # 2 MB each way at 4 MB/s
    payload = bytes(2 << 20)
    got, took = _roundtrip(proxy.port, payload, timeout_s=20)
    assert got == payload and took >= 0.45
    with pytest.raises(ProxyError, match="loss is a fraction"):
        proxy.set(loss=2.0)
    with pytest.raises(ProxyError, match="unknown fault"):
        proxy.set(latency=1.0)


def test_cut_holds_bytes_without_closing_and_restore_delivers_them(proxy: FaultProxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s:
        s.sendall(b"before")
        assert s.recv(100) == b"before"
        proxy.cut()
        s.sendall(b"during")
        s.settimeout(0.5)
        with pytest.raises(TimeoutError):
            s.recv(100)                                    # nothing moves, nothing is closed
        proxy.restore()
        s.settimeout(5)
        assert s.recv(100) == b"during"


def test_reset_and_refuse_give_connection_resets(proxy: FaultProxy) -> None:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    try:
        s.sendall(b"x")
        assert s.recv(10) == b"x"
        assert proxy.reset_connections() == 1
        with pytest.raises(ConnectionResetError):
            s.sendall(b"y")
            s.recv(10)
    finally:
        s.close()
    proxy.set(refuse=True)
    with pytest.raises((ConnectionResetError, BrokenPipeError)):     # the RST may even beat connect()
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as s2:
            s2.sendall(b"z")
            if s2.recv(10) == b"":
                raise ConnectionResetError("closed")
    assert proxy.stats().refused == 1
    proxy.clear()
    assert _roundtrip(proxy.port, b"ok")[0] == b"ok"


def test_unreachable_target_resets_the_client() -> None:
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        dead_port = spare.getsockname()[1]        # bound, never listening: connect is refused
        with FaultProxy(("127.0.0.1", dead_port)) as p:
            try:                                  # the RST may arrive before or after connect() returns
                with socket.create_connection(("127.0.0.1", p.port), timeout=5) as s:
                    assert s.recv(10) == b""
            except ConnectionResetError:
                pass
            assert p.stats().refused == 1


# ------------------------------------------------------------------ the real transport channel
def _echo_frame(frame: Frame, reply) -> None:  # type: ignore[no-untyped-def]
    reply(Frame("echo", frame.request_id, dict(frame.meta), dict(frame.tensors)))


@pytest.fixture
def tcp_link() -> Iterator[tuple[FaultProxy, TcpClient]]:
    """A transport TcpServer (node 2 side) reached by a TcpClient (node 1 side) through the proxy."""
    server = TcpServer("tcp://127.0.0.1:0", _echo_frame)
    port = int(server.start().rsplit(":", 1)[1])
    proxy = FaultProxy(("127.0.0.1", port), seed=2).start()
    client = TcpClient(f"tcp://127.0.0.1:{proxy.port}")
    try:
        yield proxy, client
    finally:
        client.close()
        proxy.close()
        server.close()


def test_transport_survives_delay_and_fails_fast_on_a_cut(tcp_link: tuple[FaultProxy, TcpClient]) -> None:
    proxy, client = tcp_link
    big = np.arange(1 << 20, dtype=np.float32)       # 4 MB each way
    assert client.request(Frame("q", "warm", tensors={"x": big}), 20).tensors["x"][-1] == big[-1]
    proxy.set(delay_s=0.05, jitter_s=0.02, loss=0.05)
    r = client.request(Frame("q", "slow", tensors={"x": big}), 20)
    np.testing.assert_array_equal(r.tensors["x"], big)
    proxy.clear()
    proxy.cut()                                       # the cable is pulled mid-request
    t0 = time.monotonic()
    with pytest.raises(PeerUnavailable, match="heartbeats missed"):
        client.request(Frame("q", "cut"), 60)
    assert time.monotonic() - t0 < HEARTBEAT_TIMEOUT_S + FAIL_FAST_MARGIN_S
    proxy.restore()
    deadline = time.monotonic() + 15
    while True:                                       # zmq reconnects by itself
        try:
            assert client.request(Frame("q", "after"), 5).kind == "echo"
            break
        except PeerUnavailable:
            if time.monotonic() > deadline:
                raise


def test_transport_reset_fails_in_flight_requests_at_once(tcp_link: tuple[FaultProxy, TcpClient]) -> None:
    proxy, client = tcp_link
    assert client.request(Frame("q", "warm"), 10).kind == "echo"
    proxy.set(delay_s=2.0)                             # keep the next request in flight
    fut = client.submit(Frame("q", "inflight"), 60)
    time.sleep(0.3)
    t0 = time.monotonic()
    proxy.reset_connections()
    with pytest.raises(PeerUnavailable, match="dropped"):
        fut.result(timeout=10)
    assert time.monotonic() - t0 < FAIL_FAST_MARGIN_S
    proxy.clear()
    deadline = time.monotonic() + 15
    while True:
        try:
            assert client.request(Frame("q", "again"), 5).kind == "echo"
            break
        except PeerUnavailable:
            if time.monotonic() > deadline:
                raise


# ------------------------------------------------------------------ the gvirtus link
def test_gvirtus_link_cut_is_a_typed_error_within_the_call_deadline(gvirtus_backend: BackendProcess) -> None:
    call_deadline_s = REMOTE_CALL_TIMEOUT_S              # node 1's session deadline
    backend = gvirtus_backend
    with FaultProxy(("127.0.0.1", backend.port)) as proxy:
        dev = gvirtus.connect(f"127.0.0.1:{proxy.port}", token=backend.token, timeout_s=call_deadline_s)
        try:
            h = dev.malloc(1024)
            proxy.cut()
            t0 = time.monotonic()
            with pytest.raises(gvirtus.RemoteDeviceLost):
                dev.memset(h, 1, nbytes=16)
            assert time.monotonic() - t0 < call_deadline_s + FAIL_FAST_MARGIN_S
        finally:
            proxy.restore()
            dev.close()
        dev2 = gvirtus.connect(f"127.0.0.1:{proxy.port}", token=backend.token, timeout_s=10)
        try:
            assert dev2.properties()["device_type"] == "cpu"
        finally:
            dev2.close()
