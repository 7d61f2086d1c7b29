"""The pool's runner: one retry on another member with the same request id, typed 503s; and the web
side: GET /api/nodes, registration over HTTP, the pool_* metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mirror.config import validate
from node1.tryon.discovery import Discovery, Registry
from node1.tryon.errors import Node2Unavailable, NoPersonInPhoto
from node1.tryon.interface import TryOnResult
from node1.tryon.pool import Pool
from node1.tryon.pool_runner import PoolRunner
from node1.tryon.runner import RunnerCounters
from tests.pool.conftest import Node2Health
from tests.web.conftest import OPERATOR_TOKEN, make_config_dict
from tests.web.doubles import InMemoryTestCatalog

REG_TOKEN = "reg-token-0123456789"


class MemberRunner:
    """A member's runner that fails (as a dead node 2 does) or answers, recording request ids."""

    def __init__(self, name: str, fail: Exception | None = None) -> None:
        self.name, self.fail, self.seen = name, fail, []   # type: list[str]

    def run(self, photo: np.ndarray, garment_id: str, progress: Any, *, timeout_s: float,
            request_id: str, source: bytes | None = None) -> TryOnResult:
        self.seen.append(request_id)
        progress("pose", 1.0)
        if self.fail is not None:
            raise self.fail
        return TryOnResult(image=photo, timings_ms={}, device=self.name, transport="tcp")


class Conn:
    def __init__(self, runner: MemberRunner) -> None:
        self.runner = runner

    def close(self) -> None:
        pass


@pytest.fixture
def healths() -> Iterator[list[Node2Health]]:
    hs = [Node2Health() for _ in range(2)]
    yield hs
    for h in hs:
        h.stop()


def _runner(healths: list[Node2Health], runners: dict[str, MemberRunner]) -> PoolRunner:
    pool = Pool(lambda m: Conn(runners.get(m.name) or MemberRunner(m.name)), health_interval_s=3600.0)
    for name, h in zip(runners, healths, strict=True):
        pool.add(name, "config", h.address)
    catalog = InMemoryTestCatalog()
    return PoolRunner(catalog, pool, timeout_s=10.0, counters=RunnerCounters())  # type: ignore[arg-type]


def _garment(r: PoolRunner) -> str:
    return r.catalog.list()[0].id


def test_a_member_failing_mid_flight_is_retried_once_with_the_same_id(healths: list[Node2Health]) -> None:
    dead, alive = MemberRunner("a", Node2Unavailable("node 2's gateway cannot be reached")), MemberRunner("b")
    r = _runner(healths, {"a": dead, "b": alive})
    stages: list[str] = []
    photo = np.zeros((8, 8, 3), np.uint8)
    try:
        first = r.pool.choose()   # the rotation's next pick is "b": take it so that "a" comes first
        assert first.name == "b"
        out = r.run(photo, _garment(r), lambda s, ms: stages.append(s))
        assert out.device == "b" and stages == ["pose"]       # progress once per stage over both tries
        assert dead.seen == alive.seen and len(dead.seen) == 1
        a = r.pool.get("a")
        assert a is not None and a.ejected and a.failures == 1 and r.pool.retries == 1
        (retry,) = r.pool.recent_retries
        assert retry["failed_on"] == ["a"] and retry["served_by"] == "b" and retry["total_ms"] >= 0
    finally:
        r.close()


def test_both_tries_failing_is_a_typed_503_naming_both(healths: list[Node2Health]) -> None:
    runners = {"a": MemberRunner("a", Node2Unavailable("gone")), "b": MemberRunner("b", Node2Unavailable("gone too"))}
    r = _runner(healths, runners)
    try:
        with pytest.raises(Node2Unavailable, match="gone"):
            r.run(np.zeros((8, 8, 3), np.uint8), _garment(r), lambda s, ms: None)
        with pytest.raises(Node2Unavailable, match="no node 2 can take the try-on now: a: ejected"):
            r.run(np.zeros((8, 8, 3), np.uint8), _garment(r), lambda s, ms: None)
    finally:
        r.close()


def test_a_bad_photo_is_not_retried(healths: list[Node2Health]) -> None:
    runners = {"a": MemberRunner("a", NoPersonInPhoto()), "b": MemberRunner("b", NoPersonInPhoto())}
    r = _runner(healths, runners)
    try:
        with pytest.raises(NoPersonInPhoto):
            r.run(np.zeros((8, 8, 3), np.uint8), _garment(r), lambda s, ms: None)
        assert r.pool.retries == 0 and len(runners["a"].seen) + len(runners["b"].seen) == 1
        assert all(m.up for m in r.pool.members())
    finally:
        r.close()


@pytest.fixture
def app(tmp_path: Path, healths: list[Node2Health]) -> Iterator[Any]:
    from node1.web import create_app, state_of

    r = _runner(healths, {"a": MemberRunner("a"), "b": MemberRunner("b")})
    r.discovery = Discovery(None, Registry(r.pool, REG_TOKEN, heartbeat_timeout_s=30.0))
    cfg = validate(make_config_dict(tmp_path), source="test-config")
    app = create_app(cfg, runner=r, catalog=r.catalog)
    app.testing = True
    yield app
    state_of(app).jobs.shutdown()
    r.close()


def test_api_nodes_needs_the_operator_token_and_lists_members(app: Any) -> None:
    c = app.test_client()
    assert c.get("/api/nodes").status_code == 401
    assert c.get("/api/nodes", headers={"Authorization": "Bearer nope"}).status_code == 401
    doc = c.get("/api/nodes", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}).get_json()
    assert doc["pool"] is True and doc["registration"] is True
    assert [(m["name"], m["source"], m["eligible"], m["breaker"]) for m in doc["members"]] == [
        ("a", "config", True, "closed"), ("b", "config", True, "closed")]


def test_registration_over_http(app: Any, healths: list[Node2Health]) -> None:
    c = app.test_client()
    third = Node2Health()
    try:
        body = {"name": "gpu-c", "host": "127.0.0.1", "gvirtus_port": 1, "gateway_port": 2,
                "health_port": third.port, "device": "cuda:0", "gpu_memory_total_mb": 81559, "max_jobs": 4}
        r = c.post("/api/nodes/register", json=body, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthorized"
        assert c.post("/api/nodes/register", json=body).status_code == 401
        r = c.post("/api/nodes/register", json={**body, "gateway_port": 0},
                   headers={"Authorization": f"Bearer {REG_TOKEN}"})
        assert r.status_code == 400 and "gateway_port = 0" in r.get_json()["error"]["message"]
        r = c.post("/api/nodes/register", json=body, headers={"Authorization": f"Bearer {REG_TOKEN}"})
        assert r.status_code == 200 and r.get_json()["heartbeat_interval_s"] > 0
        r = c.post("/api/nodes/heartbeat", json={"name": "gpu-c"}, headers={"Authorization": f"Bearer {REG_TOKEN}"})
        assert r.status_code == 200
        r = c.post("/api/nodes/heartbeat", json={"name": "nobody"}, headers={"Authorization": f"Bearer {REG_TOKEN}"})
        assert r.status_code == 404
        doc = c.get("/api/nodes", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}).get_json()
        gpu_c = next(m for m in doc["members"] if m["name"] == "gpu-c")
        assert gpu_c["source"] == "registered" and gpu_c["eligible"] and gpu_c["registered"]["max_jobs"] == 4
        assert doc["registrations_refused"] == 2
        metrics = c.get("/metrics").get_data(as_text=True)
        assert "pool_registrations_refused_total 2.0" in metrics
        assert 'pool_member_up{member="gpu-c",source="registered"} 1.0' in metrics
    finally:
        third.stop()


def test_pool_metrics_count_routing_per_member(app: Any) -> None:
    from node1.web import state_of

    runner = state_of(app).runner
    photo = np.zeros((8, 8, 3), np.uint8)
    threads = [threading.Thread(target=runner.run, args=(photo, _garment(runner), lambda s, ms: None))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    text = app.test_client().get("/metrics").get_data(as_text=True)
    routed = {line.split('"')[1]: float(line.split()[-1]) for line in text.splitlines()
              if line.startswith("pool_requests_routed_total{")}
    assert routed == {"a": 2.0, "b": 2.0}
    assert "pool_members 2.0" in text and 'pool_breaker_open{member="a"} 0.0' in text


def test_node2_registrar_registers_and_heartbeats_over_http(app: Any) -> None:
    """node2.register.Registrar against the real node 1 app over a real HTTP socket."""
    from werkzeug.serving import make_server

    from node2.register import Registrar

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    third = Node2Health()
    url = f"http://127.0.0.1:{srv.server_port}"
    body = {"name": "gpu-r", "host": "127.0.0.1", "gvirtus_port": 1, "gateway_port": 2, "health_port": third.port}
    wrong = Registrar(url, "wrong", lambda: body).start()
    good = Registrar(url, REG_TOKEN, lambda: body).start()
    try:
        assert good.registered.wait(10), good.last_error
        from node1.web import state_of

        pool = state_of(app).runner.pool
        member = pool.get("gpu-r")
        assert member is not None and member.source == "registered" and member.up
        registry = state_of(app).runner.discovery.registry
        registry.heartbeat_timeout_s = 2.0
        for _ in range(3):                 # heartbeats (every 1 s) keep it past the timeout
            time.sleep(1.0)
        assert pool.get("gpu-r") is not None
        deadline = time.monotonic() + 5
        while wrong.last_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert wrong.last_error is not None and "401" in wrong.last_error and not wrong.registered.is_set()
        assert pool.registrations_refused >= 1
        good.close()                       # it stops heartbeating: dropped after the timeout
        deadline = time.monotonic() + 6
        while pool.get("gpu-r") is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.get("gpu-r") is None
    finally:
        good.close()
        wrong.close()
        srv.shutdown()
        third.stop()


def test_registrar_refuses_a_url_without_http() -> None:
    from node2.register import Registrar, register_url

    with pytest.raises(ValueError, match="must start with https://"):
        Registrar("ftp://node1", "t", dict)
    assert register_url(["--register", "https://node1:8443"]) == "https://node1:8443"
