"""TCP channel over real zmq sockets on loopback: matching, timeouts, faults, backpressure, CURVE."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zmq

from tests.transport.conftest import CountingObserver, echo
from transport.curve import client_keys, generate_keys, server_keys
from transport.errors import (
    ChannelClosed,
    DtypeNotAllowed,
    FrameTooLarge,
    PeerUnavailable,
    RequestTimeout,
    TransportError,
)
from transport.frames import Frame, encode
from transport.tcp import TcpClient
from transport.tcp_server import TcpServer


def test_roundtrip_zero_copy_views(echo_server: TcpServer, observer: CountingObserver) -> None:
    img = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    kp = np.random.default_rng(1).random((25, 3), dtype=np.float32)
    with TcpClient(echo_server.info.endpoint) as c:
        r = c.request(Frame("tryon", "a1", {"x": 1}, {"person": img, "keypoints": kp}), 5.0)
    assert (r.kind, r.request_id, r.meta) == ("echo", "a1", {"x": 1})
    np.testing.assert_array_equal(r.tensors["person"], img)
    np.testing.assert_array_equal(r.tensors["keypoints"], kp)
    # received tensors are views over the received zmq buffers, not copies
    base = r.tensors["person"]
    while isinstance(base, np.ndarray):
        assert not base.flags.owndata
        base = base.base
    assert isinstance(base, memoryview) and isinstance(base.obj, zmq.Frame)
    assert observer.bytes["in"] == img.nbytes + kp.nbytes == observer.bytes["out"]


def test_many_in_flight_matched_by_id() -> None:
    """Replies come back in a different order than the requests; each caller gets its own."""
    held: list[tuple[Frame, object]] = []
    lock = threading.Lock()

    def reverse(frame: Frame, reply) -> None:  # type: ignore[no-untyped-def]
        with lock:
            held.append((frame, reply))
            if len(held) == 16:
                for f, rep in reversed(held):
                    rep(Frame("done", f.request_id, {"n": int(f.tensors["n"][0])}))  # type: ignore[operator]

    server = TcpServer("tcp://127.0.0.1:0", reverse)
    server.start()
    try:
        with TcpClient(server.info.endpoint) as c:
            futs = [c.submit(Frame("q", f"id{i}", tensors={"n": np.array([i])}), 5.0) for i in range(16)]
            replies = [f.result(timeout=5) for f in futs]
    finally:
        server.close()
    assert [(r.request_id, r.meta["n"]) for r in replies] == [(f"id{i}", i) for i in range(16)]


def test_threads_share_one_client(echo_server: TcpServer) -> None:
    with TcpClient(echo_server.info.endpoint) as c, ThreadPoolExecutor(8) as pool:
        def one(i: int) -> int:
            return int(c.request(Frame("q", f"t{i}", tensors={"v": np.full(100, i)}), 5.0).tensors["v"][0])
        assert sorted(pool.map(one, range(200))) == list(range(200))


def test_request_timeout_and_duplicate_id() -> None:
    server = TcpServer("tcp://127.0.0.1:0", lambda f, r: None)  # never answers
    server.start()
    try:
        with TcpClient(server.info.endpoint) as c:
            fut = c.submit(Frame("q", "slow"), 0.3)
            with pytest.raises(TransportError, match="already in flight"):
                c.submit(Frame("q", "slow"), 0.3)
            t0 = time.monotonic()
            with pytest.raises(RequestTimeout, match="'slow'"):
                fut.result(timeout=3)
            assert time.monotonic() - t0 < 1.5
    finally:
        server.close()


def test_send_side_checks() -> None:
    with TcpClient("tcp://127.0.0.1:1", max_message_bytes=1000) as c:
        with pytest.raises(FrameTooLarge, match="1000"):
            c.submit(Frame("q", "big", tensors={"a": np.zeros(2000, np.uint8)}), 1.0)
        with pytest.raises(DtypeNotAllowed, match="complex128"):
            c.submit(Frame("q", "cx", tensors={"a": np.zeros(2, np.complex128)}), 1.0)
    with pytest.raises(ChannelClosed):
        c.submit(Frame("q", "late"), 1.0)


def test_dead_peer_noticed_within_heartbeat_timeout(free_port: int) -> None:
    """Nobody listens: requests fail with PeerUnavailable after ~HEARTBEAT_TIMEOUT_S, not their 30 s timeout."""
    with TcpClient(f"tcp://127.0.0.1:{free_port}", heartbeat_timeout_s=1.0) as c:
        t0 = time.monotonic()
        with pytest.raises(PeerUnavailable, match="did not answer for 1.0s"):
            c.request(Frame("q", "x"), 30.0)
        assert time.monotonic() - t0 < 2.5


def test_server_restart_mid_stream(free_port: int) -> None:
    """In-flight requests fail with a typed error when the server goes; new ones succeed after restart."""
    endpoint = f"tcp://127.0.0.1:{free_port}"
    server = TcpServer(endpoint, lambda f, r: None)  # holds requests forever
    server.start()
    c = TcpClient(endpoint)
    try:
        futs = [c.submit(Frame("q", f"lost{i}"), 20.0) for i in range(5)]
        time.sleep(0.3)  # let them reach the server
        server.close()
        for f in futs:
            with pytest.raises(PeerUnavailable, match="dropped|did not answer"):
                f.result(timeout=5)
        server2 = TcpServer(endpoint, echo)
        server2.start()
        try:
            r = c.request(Frame("q", "after", tensors={"a": np.arange(3)}), 10.0)
            assert r.kind == "echo" and list(r.tensors["a"]) == [0, 1, 2]
        finally:
            server2.close()
    finally:
        c.close()


def _raw_dealer(endpoint: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = 3000
    sock.connect(endpoint)
    return sock


def _reply(sock: zmq.Socket) -> dict:
    parts = sock.recv_multipart()
    return json.loads(parts[0])


def test_malformed_frames_get_error_replies_and_are_counted(observer: CountingObserver) -> None:
    server = TcpServer("tcp://127.0.0.1:0", echo, observer=observer, max_message_bytes=4096)
    server.start()
    sock = _raw_dealer(server.info.endpoint)
    good = encode(Frame("q", "g", tensors={"a": np.zeros(4, np.float32)}))
    header = json.loads(good[0])
    try:
        sock.send_multipart([b"{not json"])
        assert _reply(sock)["meta"]["code"] == "malformed_frame"
        sock.send_multipart([json.dumps({**header, "id": "d", "tensors": [
            {"name": "a", "dtype": "object", "shape": [4]}]}).encode(), b"x" * 16])
        h = _reply(sock)
        assert (h["id"], h["meta"]["code"]) == ("d", "dtype_not_allowed") and "'object'" in h["meta"]["message"]
        sock.send_multipart([json.dumps({**header, "id": "s"}).encode(), b"x" * 15])
        h = _reply(sock)
        assert (h["id"], h["meta"]["code"]) == ("s", "malformed_frame")
        assert "16 bytes, buffer has 15" in h["meta"]["message"]
        big = json.dumps({**header, "id": "L", "tensors": [{"name": "a", "dtype": "uint8", "shape": [3000]},
                                                           {"name": "b", "dtype": "uint8", "shape": [3000]}]})
        sock.send_multipart([big.encode(), b"x" * 3000, b"y" * 3000])
        assert _reply(sock)["meta"]["code"] == "frame_too_large"
        sock.send_multipart([json.dumps({**header, "v": 99}).encode(), b"x" * 16])
        assert "version 99" in _reply(sock)["meta"]["message"]
        # ... and the server still serves well-formed frames
        sock.send_multipart(good)
        assert _reply(sock)["kind"] == "echo"
    finally:
        sock.close()
        server.close()
    assert observer.malformed == ["malformed_frame", "dtype_not_allowed", "malformed_frame", "frame_too_large",
                                  "malformed_frame"]


def test_slow_server_pushes_back() -> None:
    """A server that stops answering stops reading; the client blocks at max_in_flight instead of queueing."""
    server = TcpServer("tcp://127.0.0.1:0", lambda f, r: None, max_outstanding=2, hwm=1)
    server.start()
    try:
        with TcpClient(server.info.endpoint, max_in_flight=4, hwm=1, heartbeat_timeout_s=None) as c:
            futs = [c.submit(Frame("q", f"p{i}"), 1.0) for i in range(4)]
            t0 = time.monotonic()
            with pytest.raises(RequestTimeout, match="4 requests already in flight"):
                c.submit(Frame("q", "p4"), 0.3)
            assert 0.25 < time.monotonic() - t0 < 1.0
            for f in futs:
                with pytest.raises(RequestTimeout):
                    f.result(timeout=3)
    finally:
        server.close()


def test_reply_from_another_thread(echo_server: TcpServer) -> None:
    def later(frame: Frame, reply) -> None:  # type: ignore[no-untyped-def]
        threading.Timer(0.05, reply, args=(Frame("late", frame.request_id),)).start()

    server = TcpServer("tcp://127.0.0.1:0", later)
    server.start()
    try:
        with TcpClient(server.info.endpoint) as c:
            assert c.request(Frame("q", "t"), 5.0).kind == "late"
    finally:
        server.close()


def test_handler_exception_becomes_error_reply() -> None:
    def boom(frame: Frame, reply) -> None:  # type: ignore[no-untyped-def]
        raise RuntimeError("kaput")

    server = TcpServer("tcp://127.0.0.1:0", boom)
    server.start()
    try:
        with TcpClient(server.info.endpoint) as c:
            r = c.request(Frame("q", "e"), 5.0)
            assert (r.kind, r.meta["code"]) == ("error", "internal") and "kaput" in r.meta["message"]
    finally:
        server.close()


def test_bind_conflict_is_translated(echo_server: TcpServer) -> None:
    with pytest.raises(TransportError, match="cannot listen on .*change the port"):
        TcpServer(echo_server.info.endpoint, echo).start()
    with pytest.raises(TransportError, match="cannot connect"):
        TcpClient("nonsense://x")


def test_curve_encrypts_and_authenticates(tmp_path: Path) -> None:
    keys = generate_keys(tmp_path / "keys")
    server = TcpServer("tcp://127.0.0.1:0", echo, curve=server_keys(keys))
    server.start()
    try:
        with TcpClient(server.info.endpoint, curve=client_keys(keys)) as c:
            assert c.request(Frame("q", "s", tensors={"a": np.arange(5)}), 5.0).kind == "echo"
        # a client whose key is not authorized is refused (no reply, typed error naming CURVE)
        other = generate_keys(tmp_path / "other")
        stranger = client_keys(other)
        stranger = type(stranger)(stranger.public, stranger.secret, server_keys(keys).public)
        with TcpClient(server.info.endpoint, curve=stranger, heartbeat_timeout_s=1.0) as c:
            with pytest.raises(PeerUnavailable, match="CurveZMQ handshake failed"):
                c.request(Frame("q", "x"), 5.0)
        # a plain-text client cannot talk to a secure server either
        with TcpClient(server.info.endpoint, heartbeat_timeout_s=1.0) as c:
            with pytest.raises(PeerUnavailable):
                c.request(Frame("q", "y"), 5.0)
    finally:
        server.close()


def test_async_submits_and_blocking_requests_mixed(echo_server: TcpServer) -> None:
    """Futures from submit() complete while other threads sit in request() (who reads the socket
    changes hands between callers and the I/O thread); none is lost or stuck."""
    with TcpClient(echo_server.info.endpoint) as c, ThreadPoolExecutor(4) as pool:
        futs = [c.submit(Frame("q", f"a{i}", tensors={"v": np.array([i])}), 10.0) for i in range(50)]

        def blocking(i: int) -> int:
            return int(c.request(Frame("q", f"b{i}", tensors={"v": np.array([i])}), 10.0).tensors["v"][0])

        assert sorted(pool.map(blocking, range(100))) == list(range(100))
        later = [c.submit(Frame("q", f"c{i}"), 10.0) for i in range(20)]  # no caller reading now
        assert [int(f.result(timeout=10).tensors["v"][0]) for f in futs] == list(range(50))
        assert all(f.result(timeout=10).request_id == f"c{i}" for i, f in enumerate(later))


def test_done_callback_may_use_the_channel(echo_server: TcpServer) -> None:
    """Futures are resolved inside the channel; a callback that submits again must not deadlock."""
    chained: list = []
    with TcpClient(echo_server.info.endpoint) as c:
        first = c.submit(Frame("q", "first"), 5.0)
        first.add_done_callback(lambda f: chained.append(c.submit(Frame("q", "second"), 5.0)))
        assert first.result(timeout=5).request_id == "first"
        deadline = time.monotonic() + 5
        while not chained and time.monotonic() < deadline:
            time.sleep(0.01)
        assert chained[0].result(timeout=5).request_id == "second"


@pytest.mark.parametrize("endpoint", ["bogus://x", "tcp://127.0.0.1:notaport", "tcp://no.such.host.invalid:5"])
def test_zmq_errors_never_leak(endpoint: str) -> None:
    """Bad endpoints surface as TransportError (the package's tree), never as zmq.ZMQError."""
    with pytest.raises(TransportError):
        TcpServer(endpoint, echo).start()
    try:
        client = TcpClient(endpoint, heartbeat_timeout_s=0.5)
    except TransportError:
        return  # refused at connect time
    with client:  # zmq accepted the address lazily: the failure must still be typed
        with pytest.raises(TransportError):
            client.request(Frame("q", "x"), 2.0)


def test_zmq_errors_become_the_packages_errors_in_one_place() -> None:
    """transport.tcp_common.from_zmq: a listen on a taken port, a send to a peer that left, a closed
    context, a message over zmq's size limit, and anything else, each as its typed error."""
    import errno

    import zmq

    from transport.errors import ChannelClosed, FrameTooLarge, PeerUnavailable, TransportError
    from transport.tcp_common import from_zmq

    taken = from_zmq(zmq.ZMQError(errno.EADDRINUSE), "listen on tcp://127.0.0.1:5555")
    assert type(taken) is TransportError and "listen on tcp://127.0.0.1:5555" in str(taken)
    assert "change the port in env_config.json" in str(taken)
    gone = from_zmq(zmq.ZMQError(errno.EHOSTUNREACH), "send request 'r1' to tcp://127.0.0.1:5555")
    assert isinstance(gone, PeerUnavailable) and "'r1'" in str(gone)
    assert isinstance(from_zmq(zmq.ZMQError(zmq.ETERM), "send"), ChannelClosed)
    assert isinstance(from_zmq(zmq.ZMQError(errno.EMSGSIZE), "send"), FrameTooLarge)
    other = from_zmq(zmq.ZMQError(errno.EPROTONOSUPPORT), "connect a zmq DEALER to 'bogus://x'")
    assert type(other) is TransportError and "bogus://x" in str(other)


def test_a_taken_port_is_refused_with_the_typed_error() -> None:
    import socket

    from transport import TcpServer
    from transport.errors import TransportError

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        server = TcpServer(f"tcp://127.0.0.1:{port}", lambda frame, reply: None)
        with pytest.raises(TransportError, match=f"cannot listen on tcp://127.0.0.1:{port}: Address already in use"):
            server.start()
