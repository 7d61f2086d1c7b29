"""`python -m node2.gateway` as a real process: readiness, clean stop, restart mid-stream."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from node1.tryon.node2_client import TryOnClient
from tests.node2.conftest import TinyViton, make_garment, person_tensors
from tests.node2.procs import start_gateway, stop, write_config
from transport import Frame, PeerUnavailable, TcpClient
from transport.endpoints import gateway_endpoint


def test_ready_then_sigterm_stops_cleanly(gateway_config: Any, viton: TinyViton, tmp_path: Path) -> None:
    proc, info = start_gateway(write_config(tmp_path / "cfg.json", gateway_config))
    try:
        assert info["component"] == "node2.gateway"
        assert info["listen"] == f"127.0.0.1:{gateway_config['node2']['gateway_port']}"
        assert info["transport"] == [f"tcp tcp://127.0.0.1:{gateway_config['node2']['gateway_port']}"]
        assert info["viton"] == gateway_config["viton"]["endpoint"]
    finally:
        rc = stop(proc)
    out = proc.stdout.read().decode()  # type: ignore[union-attr]
    assert rc == 0, out
    assert "not listening for RDMA because no RDMA device" in out  # the fallback is logged


def test_restart_mid_stream(gateway_config, viton: TinyViton, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Node 2 dies with try-ons in flight: each fails with PeerUnavailable; after restart new ones succeed."""
    cfg_path = write_config(tmp_path / "cfg.json", gateway_config)
    garment = make_garment()
    proc, _ = start_gateway(cfg_path)
    client = TryOnClient(TcpClient(gateway_endpoint(gateway_config)))
    try:
        assert client.put_garment(garment, 5).kind == "garment_stored"
        viton.delay_s = 3.0  # keep them in flight
        person = person_tensors()
        futs = [client.channel.submit(Frame("tryon", f"inflight{i}", {"garment_id": garment.id}, person), 20)
                for i in range(4)]
        deadline = time.monotonic() + 5
        while len(viton.received) < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(viton.received) == 4
        stop(proc, signal.SIGKILL)
        t0 = time.monotonic()
        for f in futs:
            with pytest.raises(PeerUnavailable, match="dropped|did not answer"):
                f.result(timeout=10)
        assert time.monotonic() - t0 < 4.0
        viton.delay_s = 0.0
        proc, _ = start_gateway(cfg_path)
        r = client.tryon(person, garment, timeout_s=15)  # new process, empty cache: garment re-sent
        assert r.kind == "result", r.meta
        assert r.tensors["image"].shape == person["person"].shape and r.tensors["image"].dtype == np.uint8
    finally:
        client.close()
        stop(proc)
