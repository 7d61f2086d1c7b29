"""The gateway -> VITON link is closed when it can leave the host: with transport.secure on and a
tcp:// VITON endpoint, the service serves CurveZMQ only (the gateway's client keys come from the same
config), a plain-text client gets nothing; over ipc:// (LOCAL, one host) no keys are used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from transport import Frame, PeerUnavailable, TcpClient
from transport.auto import client_curve_keys, server_curve_keys
from transport.curve import generate_keys
from viton.geometric import GeometricEngine
from viton.service import TryOnService, serve

MAX_BYTES = 64 * 1024 * 1024


class _Cfg(dict):  # the two things server/client_curve_keys read of a mirror.Config
    def path(self, p: Any) -> Path:
        return Path(p)


def _cfg(key_dir: Path, secure: bool) -> _Cfg:
    return _Cfg(transport={"secure": secure, "curve_key_dir": str(key_dir)})


def test_secure_tcp_link_is_curve_and_refuses_plaintext(tmp_path: Path, free_port: int) -> None:
    cfg = _cfg(generate_keys(tmp_path / "keys"), secure=True)
    endpoint = f"tcp://127.0.0.1:{free_port}"
    assert server_curve_keys(cfg, endpoint) is not None and client_curve_keys(cfg, endpoint) is not None
    svc = TryOnService(GeometricEngine())
    server = serve(svc, endpoint, max_bytes=MAX_BYTES, curve=server_curve_keys(cfg, endpoint))
    try:
        with TcpClient(endpoint, curve=client_curve_keys(cfg, endpoint)) as gateway:
            health = gateway.request(Frame("health", "h1"), 10.0)
            assert health.kind == "health" and health.meta["status"] == "ok"
        with TcpClient(endpoint, heartbeat_timeout_s=1.0) as plain, pytest.raises(PeerUnavailable):
            plain.request(Frame("health", "h2"), 5.0)
    finally:
        server.close()
        svc.stop()


def test_ipc_link_and_insecure_config_use_no_keys(tmp_path: Path) -> None:
    keys = generate_keys(tmp_path / "keys")
    assert server_curve_keys(_cfg(keys, secure=True), f"ipc://{tmp_path}/viton.sock") is None
    assert client_curve_keys(_cfg(keys, secure=True), f"ipc://{tmp_path}/viton.sock") is None
    assert server_curve_keys(_cfg(keys, secure=False), "tcp://127.0.0.1:9557") is None
