"""State that several web workers share (`node1.store: "redis"`), against a REAL redis-server.

Two apps built on one Redis prefix stand for two gunicorn workers (or two node-1 replicas): a job
started on one is followed, read and downloaded on the other; both count one rate limit; an
Idempotency-Key maps to one job on either store; a worker that disappears mid-job (its lease in
Redis expires) has its job failed `worker_lost`, and the same key re-sent runs it again. The
pipeline is the web-layer TEST DOUBLE (tests/web/doubles.py); the killed-process version of the
last check runs the real server: tests/web/test_workers.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from node1.web import create_app, state_of
from node1.web.redisstore import LEASE_TTL_S
from tests.web.conftest import _merge
from tests.web.doubles import TorsoTintTestRunner
from tests.web.test_api import parse_sse, post_tryon

EXPIRY_SLACK_S = 1.0      # Redis expires keys actively ~10 times a second; allow for a loaded machine


@pytest.fixture
def shared_apps(make_config: Callable[..., Any], catalog: Any, redis_socket: str,
                request: pytest.FixtureRequest) -> Any:
    """make(n, runner=..., **cfg_over) -> n apps on ONE Redis prefix (as n workers would be)."""
    made: list[Any] = []

    def make(n: int = 2, runner: Any = None, **cfg_over: Any) -> list[Any]:
        prefix = f"sh{request.node.nodeid.__hash__() & 0xffffff:x}-{len(made)}-"
        over = _merge({"node1": {"store": "redis", "web_processes": n,
                                 "redis": {"unix_socket": redis_socket, "key_prefix": prefix}}}, cfg_over)
        apps = []
        for _ in range(n):
            app = create_app(make_config(**over), runner=runner or TorsoTintTestRunner(catalog), catalog=catalog)
            app.testing = True
            apps.append(app)
        made.extend(apps)
        return apps

    yield make
    for app in made:
        state_of(app).jobs.shutdown()


def test_job_started_on_one_worker_is_followed_on_another(shared_apps, catalog, astronaut_jpeg):
    a, b = shared_apps(2, runner=TorsoTintTestRunner(catalog, delay_s=0.05))
    job = post_tryon(a.test_client(), astronaut_jpeg, query="?mode=async").json
    other = b.test_client()
    events = parse_sse(other.get(job["events_url"]).get_data(as_text=True))
    assert [e for e, _ in events] == ["stage"] * 4 + ["done"]
    st = other.get(job["status_url"]).json
    assert st["state"] == "done" and st["stages"] == ["pose", "parsing", "transfer", "tryon"]
    img = other.get(job["result_url"])
    assert img.status_code == 200 and img.mimetype == "image/jpeg" and img.data[:2] == b"\xff\xd8"
    assert state_of(b).jobs.active == 0          # b only read it: the job ran on a
    assert state_of(b).jobs.store.result(job["id"]) == state_of(a).jobs.store.result(job["id"])


def test_rate_limit_is_counted_across_workers(shared_apps, astronaut_jpeg):
    a, b = shared_apps(2, limits={"rate_limit_per_min": 3})
    assert post_tryon(a.test_client(), astronaut_jpeg).status_code == 200
    assert post_tryon(b.test_client(), astronaut_jpeg).status_code == 200
    assert post_tryon(a.test_client(), astronaut_jpeg).status_code == 200
    r = post_tryon(b.test_client(), astronaut_jpeg)
    assert r.status_code == 429 and r.json["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert "more than 3 requests per minute" in r.json["error"]["message"]


@pytest.mark.parametrize("store_kind", ["memory", "redis"])
def test_same_idempotency_key_runs_once(app_factory, catalog, astronaut_jpeg, store_kind):
    runner = TorsoTintTestRunner(catalog)
    client = app_factory(runner=runner).test_client()
    key = {"Idempotency-Key": "k-0123456789abcdef"}
    first = post_tryon(client, astronaut_jpeg, headers=key)
    again = post_tryon(client, astronaut_jpeg, headers=key)
    assert first.status_code == again.status_code == 200
    assert first.json == again.json and runner.calls == 1
    third = post_tryon(client, astronaut_jpeg, headers={"Idempotency-Key": "k-another-key-000"})
    assert third.json["id"] != first.json["id"] and runner.calls == 2
    no_key = [post_tryon(client, astronaut_jpeg).json["id"] for _ in range(2)]
    assert no_key[0] != no_key[1] and runner.calls == 4
    elsewhere = post_tryon(client, astronaut_jpeg, headers=key, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert elsewhere.json["id"] != first.json["id"] and runner.calls == 5   # keys are per client address
    bad = post_tryon(client, astronaut_jpeg, headers={"Idempotency-Key": "short"})
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json["error"]["message"]


def test_retry_on_another_worker_finds_the_running_job(shared_apps, catalog, astronaut_jpeg):
    runner = TorsoTintTestRunner(catalog, delay_s=0.1)
    a, b = shared_apps(2, runner=runner)
    key = {"Idempotency-Key": "k-find-running-job"}
    first = post_tryon(a.test_client(), astronaut_jpeg, query="?mode=async", headers=key).json
    retried = post_tryon(b.test_client(), astronaut_jpeg, headers=key)    # synchronous: waits on a's job
    assert retried.status_code == 200 and retried.json["id"] == first["id"]
    assert runner.calls == 1


def test_lost_worker_fails_its_job_and_the_retry_redoes_it(shared_apps, catalog, astronaut_jpeg):
    gate = threading.Event()

    class Stuck(TorsoTintTestRunner):
        def run(self, photo, garment_id, progress, **kw):  # type: ignore[no-untyped-def]
            progress("pose", 1.0)
            gate.wait(30)
            return super().run(photo, garment_id, progress)

    stuck = Stuck(catalog)
    healthy = TorsoTintTestRunner(catalog)
    a, = shared_apps(1, runner=stuck)
    b, = shared_apps(1, runner=healthy, node1={"redis": {"key_prefix": state_of(a).jobs.store.prefix}})
    key = {"Idempotency-Key": "k-lost-worker-0001"}
    try:
        job = post_tryon(a.test_client(), astronaut_jpeg, query="?mode=async", headers=key).json
        running = state_of(b).jobs.store.wait(job["id"], lambda r: "pose" in r.stages, 10)
        assert running is not None and running.state == "running"
        state_of(a).jobs.store.close()          # worker a "dies": its lease is no longer renewed
        deadline = time.monotonic() + LEASE_TTL_S + 5
        while (st := b.test_client().get(job["status_url"]).json)["state"] != "failed":
            assert time.monotonic() < deadline, st
            time.sleep(0.1)
        assert st["error"]["code"] == "worker_lost" and st["stages"] == ["pose"]
        redo = post_tryon(b.test_client(), astronaut_jpeg, headers=key)
        assert redo.status_code == 200 and redo.json["id"] != job["id"]
        assert healthy.calls == 1
        again = post_tryon(b.test_client(), astronaut_jpeg, headers=key)   # the key now names the redone job
        assert again.json["id"] == redo.json["id"] and healthy.calls == 1
    finally:
        gate.set()
    time.sleep(0.2)      # a's late result is discarded: the job stays failed
    assert b.test_client().get(job["status_url"]).json["error"]["code"] == "worker_lost"


def test_results_expire_by_redis_key_expiry(shared_apps, redis_socket, astronaut_jpeg):
    a, = shared_apps(1, limits={"result_ttl_s": 1})
    body = post_tryon(a.test_client(), astronaut_jpeg).json
    prefix = state_of(a).jobs.store.prefix
    r = redis.Redis(unix_socket_path=redis_socket)
    assert r.exists(f"{prefix}job:{body['id']}", f"{prefix}result:{body['id']}") == 2
    assert 0 < r.pttl(f"{prefix}result:{body['id']}") <= 1000
    time.sleep(1.0 + EXPIRY_SLACK_S)        # no request in between: Redis drops them on its own
    assert r.exists(f"{prefix}job:{body['id']}", f"{prefix}result:{body['id']}") == 0
    assert a.test_client().get(body["result_url"]).status_code == 404


def test_nothing_persisted_and_photo_never_stored(shared_apps, redis_socket, astronaut_jpeg):
    a, = shared_apps(1)
    body = post_tryon(a.test_client(), astronaut_jpeg).json
    r = redis.Redis(unix_socket_path=redis_socket)
    assert r.config_get("save")["save"] == "" and r.config_get("appendonly")["appendonly"] == "no"
    prefix = state_of(a).jobs.store.prefix
    keys = {k.decode().removeprefix(prefix).split(":")[0] for k in r.scan_iter(match=f"{prefix}*")}
    assert keys <= {"job", "result", "lease", "limit", "LIMITS"}, keys
    assert len(r.get(f"{prefix}result:{body['id']}")) < len(astronaut_jpeg) * 2   # a JPEG, not pixels


def test_redis_down_is_a_json_503(make_config, catalog, tmp_path, redis_socket, astronaut_jpeg):
    app = create_app(make_config(node1={"store": "redis", "redis": {"unix_socket": redis_socket}}),
                     runner=TorsoTintTestRunner(catalog), catalog=catalog)
    store = state_of(app).jobs.store
    store.r.connection_pool.connection_kwargs["path"] = str(tmp_path / "no-redis.sock")
    store.r.connection_pool.disconnect()
    try:
        r = post_tryon(app.test_client(), astronaut_jpeg)
        assert r.status_code == 503 and r.json["error"]["code"] == "store_unavailable"
        assert "Redis" in r.json["error"]["message"]
    finally:
        state_of(app).jobs.shutdown()
