"""`transport.mode: auto` when RDMA *is* available — with pyverbs replaced by the simulated
queue pair of tests/transport/fake_verbs.py (no hardware here). Checks the choice and that the
gateway serves try-ons on its RDMA channel as on TCP; it says nothing about real verbs."""

from __future__ import annotations

from pathlib import Path

import pytest

from node1.tryon.node2_client import TryOnClient
from tests.node2.conftest import TinyViton, free_tcp_port, make_garment, person_tensors
from tests.transport.conftest import make_config
from tests.transport.fake_verbs import CM_VERBS
from transport import connect


def test_auto_prefers_rdma_and_gateway_serves_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import transport.rdma as rdma
    from node2.gateway import start

    monkeypatch.setattr(rdma, "verbs", lambda: CM_VERBS)
    monkeypatch.setattr(rdma, "probe", lambda device=None: "simulated0")
    cfg = make_config({"node2": {"gateway_port": free_tcp_port(), "health_port": free_tcp_port()},
                       "transport": {"mode": "auto", "rdma": {"rdma_port": free_tcp_port()}},
                       "viton": {"endpoint": f"ipc://{tmp_path}/viton.sock"}})
    viton = TinyViton(cfg["viton"]["endpoint"]).start()
    running = start(cfg)
    try:
        assert [s.info.backend for s in running.servers] == ["tcp", "rdma"]
        channel = connect(cfg)
        assert channel.info.backend == "rdma"
        with TryOnClient(channel) as client:
            r = client.tryon(person_tensors(), make_garment(), timeout_s=10)  # need_garment round included
        assert r.kind == "result" and r.meta["timings_ms"]["gateway_ms"] > 0
    finally:
        running.close()
        viton.close()
