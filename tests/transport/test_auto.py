"""Backend choice and the RDMA fallback, as it runs here (no RDMA device on this machine)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from tests.transport.conftest import make_config
from transport import InsecureTransport, PeerUnavailable, RdmaUnavailable, TcpClient, TcpServer, connect, listen, plan
from transport.auto import SECURE_REFUSES_RDMA
from transport.frames import Frame
from transport.rdma import probe


def _rdma_reason() -> str | None:
    try:
        probe()
    except RdmaUnavailable as exc:
        return str(exc)
    return None


NO_RDMA = _rdma_reason()
needs_no_rdma = pytest.mark.skipif(NO_RDMA is None, reason="an RDMA device is present: fallback not exercised")


@needs_no_rdma
def test_probe_says_why() -> None:
    assert NO_RDMA is not None and "RDMA" in NO_RDMA
    print(f"RDMA probe on this machine: {NO_RDMA}")


@needs_no_rdma
def test_auto_falls_back_to_tcp_and_logs_why(free_port: int, caplog: pytest.LogCaptureFixture) -> None:
    cfg = make_config({"node2": {"gateway_port": free_port}, "transport": {"mode": "auto"}})
    server = TcpServer(f"tcp://127.0.0.1:{free_port}", lambda f, r: r(Frame("ok", f.request_id)))
    server.start()
    try:
        with caplog.at_level(logging.WARNING, logger="transport.auto"):
            channel = connect(cfg)
        try:
            assert isinstance(channel, TcpClient)
            assert channel.info.backend == "tcp" and "RDMA unavailable, fell back to TCP" in channel.info.reason
            assert any(f"using TCP to tcp://127.0.0.1:{free_port} because" in r.getMessage()
                       and "RDMA" in r.getMessage() for r in caplog.records)
            assert channel.request(Frame("q", "1", tensors={"a": np.ones(3)}), 5.0).kind == "ok"
        finally:
            channel.close()
    finally:
        server.close()


@needs_no_rdma
def test_mode_rdma_fails_clearly() -> None:
    cfg = make_config({"transport": {"mode": "rdma"}})
    with pytest.raises(RdmaUnavailable, match="transport.mode = rdma but RDMA cannot be used.*auto or tcp"):
        connect(cfg)
    with pytest.raises(RdmaUnavailable, match="transport.mode = rdma"):
        listen(cfg, lambda f, r: None)


def test_mode_tcp_never_touches_rdma(free_port: int) -> None:
    cfg = make_config({"node2": {"gateway_port": free_port}, "transport": {"mode": "tcp"}})
    channel = connect(cfg)
    try:
        assert isinstance(channel, TcpClient) and channel.info.reason == "transport.mode = tcp"
    finally:
        channel.close()


@needs_no_rdma
def test_listen_auto_serves_tcp_only(free_port: int, caplog: pytest.LogCaptureFixture) -> None:
    cfg = make_config({"node2": {"gateway_port": free_port}, "transport": {"mode": "auto"}})
    with caplog.at_level(logging.WARNING, logger="transport.auto"):
        servers = listen(cfg, lambda f, r: r(Frame("ok", f.request_id)))
    try:
        assert [s.info.backend for s in servers] == ["tcp"]
        assert "RDMA unavailable, TCP only" in servers[0].info.reason
        assert any("not listening for RDMA" in r.getMessage() for r in caplog.records)
    finally:
        for s in servers:
            s.close()


def test_missing_pyverbs_is_a_fallback_not_a_crash(free_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """With pyverbs not importable at all, auto still connects over TCP."""
    import sys

    monkeypatch.setitem(sys.modules, "pyverbs", None)  # makes `import pyverbs...` raise ImportError
    with pytest.raises(RdmaUnavailable, match="pyverbs is not importable"):
        probe()
    cfg = make_config({"node2": {"gateway_port": free_port}, "transport": {"mode": "auto"}})
    channel = connect(cfg)
    try:
        assert "pyverbs is not importable" in channel.info.reason
    finally:
        channel.close()


@pytest.mark.skipif(NO_RDMA is not None, reason=f"needs an RDMA device: {NO_RDMA}")
def test_rdma_loopback_roundtrip(free_port: int) -> None:  # pragma: no cover - needs hardware
    from transport.rdma import RdmaClient, RdmaServer

    server = RdmaServer("127.0.0.1", free_port, lambda f, r: r(Frame("echo", f.request_id, tensors=f.tensors)))
    server.start()
    try:
        with RdmaClient("127.0.0.1", free_port) as c:
            for n in (10, 5 << 20):
                a = np.arange(n, dtype=np.uint8)
                np.testing.assert_array_equal(c.request(Frame("q", str(n), tensors={"a": a}), 10).tensors["a"], a)
    finally:
        server.close()


# transport.secure: only authenticated + encrypted channels ----------------------------------------


def _block_rdma_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt to load the RDMA backend fail loudly: proves the choice was made without
    probing, on any host (an RDMA host included)."""
    import sys

    monkeypatch.delitem(sys.modules, "transport.rdma", raising=False)
    monkeypatch.setitem(sys.modules, "transport.rdma", None)   # `from transport.rdma import ...` -> ImportError


def _secure_config(tmp_path, free_port: int, mode: str):  # type: ignore[no-untyped-def]
    from transport.curve import generate_keys

    keys = generate_keys(tmp_path / "curve")
    return make_config({"node2": {"gateway_port": free_port},
                        "transport": {"mode": mode, "secure": True, "curve_key_dir": str(keys)}}), keys


@pytest.mark.parametrize(("mode", "secure", "try_rdma", "use_tcp"), [
    ("tcp", False, False, True), ("tcp", True, False, True),
    ("auto", False, True, True), ("auto", True, False, True),
    ("rdma", False, True, False),
])
def test_plan_is_decided_before_probing(mode: str, secure: bool, try_rdma: bool, use_tcp: bool) -> None:
    chosen = plan({"mode": mode, "secure": secure})
    assert (chosen.try_rdma, chosen.use_tcp) == (try_rdma, use_tcp)
    if secure and mode == "auto":
        assert "transport.secure = true: RDMA not used" in chosen.reason and "CurveZMQ" in chosen.reason


def test_plan_refuses_rdma_with_secure_naming_both_keys() -> None:
    with pytest.raises(InsecureTransport, match=r"transport.mode = rdma with transport.secure = true.*"
                                                r"no authentication or encryption.*auto or tcp"):
        plan({"mode": "rdma", "secure": True})
    with pytest.raises(ValueError, match="transport.mode must be auto, rdma or tcp, got 'udp'"):
        plan({"mode": "udp", "secure": False})


def test_secure_auto_connects_with_curve_and_never_touches_rdma(
        tmp_path, free_port: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from transport.curve import server_keys

    cfg, keys = _secure_config(tmp_path, free_port, "auto")
    server = TcpServer(f"tcp://127.0.0.1:{free_port}", lambda f, r: r(Frame("ok", f.request_id, tensors=f.tensors)),
                       curve=server_keys(keys))
    server.start()
    _block_rdma_module(monkeypatch)
    try:
        with caplog.at_level(logging.INFO, logger="transport.auto"):
            channel = connect(cfg)
        try:
            assert isinstance(channel, TcpClient) and channel.info.backend == "tcp"
            assert channel.info.reason == SECURE_REFUSES_RDMA          # not "RDMA unavailable": never probed
            assert any("RDMA not used (the RDMA channel has no authentication or encryption)" in r.getMessage()
                       for r in caplog.records)
            reply = channel.request(Frame("q", "1", tensors={"a": np.arange(4)}), 5.0)   # a real CurveZMQ round trip
            np.testing.assert_array_equal(reply.tensors["a"], np.arange(4))
        finally:
            channel.close()
    finally:
        server.close()


def test_secure_auto_gateway_listens_on_curve_tcp_only(tmp_path, free_port: int, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    from transport.curve import client_keys

    cfg, keys = _secure_config(tmp_path, free_port, "auto")
    _block_rdma_module(monkeypatch)
    with caplog.at_level(logging.INFO, logger="transport.auto"):
        servers = listen(cfg, lambda f, r: r(Frame("ok", f.request_id)))
    try:
        assert [s.info.backend for s in servers] == ["tcp"] and servers[0].info.reason == SECURE_REFUSES_RDMA
        assert any("not listening for RDMA" in r.getMessage() for r in caplog.records)
        with TcpClient(f"tcp://127.0.0.1:{free_port}", curve=client_keys(keys)) as c:   # authorised key: served
            assert c.request(Frame("q", "2"), 5.0).kind == "ok"
        with TcpClient(f"tcp://127.0.0.1:{free_port}", heartbeat_timeout_s=1.0) as c:    # plaintext: refused
            with pytest.raises(PeerUnavailable):
                c.request(Frame("q", "3"), 5.0)
    finally:
        for s in servers:
            s.close()


def test_secure_rdma_is_refused_before_anything_opens(tmp_path, free_port: int,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cfg, _ = _secure_config(tmp_path, free_port, "rdma")
    _block_rdma_module(monkeypatch)
    for attempt in (lambda: connect(cfg), lambda: listen(cfg, lambda f, r: None)):
        with pytest.raises(InsecureTransport, match="transport.mode = rdma with transport.secure = true"):
            attempt()
    # nothing was left listening on the gateway port
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", free_port))
