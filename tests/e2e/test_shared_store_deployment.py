"""End to end on the REAL LOCAL deployment with `node1.store: "redis"` and two web worker processes.

start_application.sh starts Debian's redis-server (memory only, unix socket) before node 1; real
try-ons run through gvirtus, the gateway and VITON. Checks: the supervisor's Redis (socket folder
mode 0700, persistence off); try-ons and their events, status and results on fresh connections
(any of the two workers answers); `kill -9` of the worker running a real try-on mid-request: the
same request re-sent with its Idempotency-Key gets the try-on, nothing runs twice; on stop, Redis
is gone and its socket removed.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from PIL import Image

from node1.cli.http_client import WebClient
from testing.deployment import LocalDeployment, children
from tests.web.connections import holder_of, job_of_key, owner_pid, server_socket_inode
from tests.web.server import client_context, multipart

REQUEST_TIMEOUT_S = 240          # real preprocessing on a busy 2-core machine
KILL_ATTEMPTS = 4                # a real try-on can finish before the test catches it running; try again
CATCH_TIMEOUT_S = 60.0
RESPAWN_TIMEOUT_S = 60.0
PREFIX = "vm:"


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    import shutil

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian package redis-server; scripts/bootstrap.sh as root)")
    overrides = {"node1": {"store": "redis", "web_processes": 2},
                 "limits": {"rate_limit_per_min": 100000, "request_timeout_s": REQUEST_TIMEOUT_S}}
    with LocalDeployment(tmp_path_factory.mktemp("e2e-redis"), overrides=overrides) as dep:
        yield dep


@pytest.fixture(scope="module")
def client(deployment: LocalDeployment) -> WebClient:
    return WebClient(deployment.url, cafile=deployment.cafile, timeout_s=REQUEST_TIMEOUT_S + 30)


@pytest.fixture(scope="module")
def socket_path(deployment: LocalDeployment) -> str:
    listen = deployment.ready_info("node1.redis")["listen"]
    assert listen.startswith("unix:"), listen
    return str(listen.removeprefix("unix:"))


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def _red(client: WebClient) -> str:
    return next(g["id"] for g in client.garments() if "red" in g["name"].lower())


def test_supervisor_runs_redis_memory_only(deployment: LocalDeployment, socket_path: str) -> None:
    assert stat.S_IMODE(os.stat(Path(socket_path).parent).st_mode) == 0o700
    r = redis.Redis(unix_socket_path=socket_path)
    assert r.config_get("save")["save"] == "" and r.config_get("appendonly")["appendonly"] == "no"
    assert r.config_get("port")["port"] == "0"                 # no TCP listener at all
    arbiter = deployment.children()["node1.web"]
    assert len(children(arbiter)) == 2                        # node1.web_processes


def test_tryons_and_their_jobs_answer_on_any_worker(deployment: LocalDeployment, client: WebClient,
                                                    astronaut: np.ndarray, socket_path: str) -> None:
    gid, photo = _red(client), _jpeg(astronaut)
    out = client.tryon(photo, gid)
    result = np.asarray(Image.open(io.BytesIO(client.result(out["result_url"]))).convert("RGB"), np.float32)
    chest = (slice(300, 400), slice(150, 300))
    assert np.abs(result[chest] - astronaut[chest].astype(np.float32)).mean() > 25.0
    body, ctype = multipart({"garment": gid}, {"photo": ("a.jpg", photo)})
    jobs = []
    for _ in range(4):        # every request on a new connection: the two workers share the accept queue
        status, _, data = client.request("POST", "/api/tryon?mode=async", body, {"Content-Type": ctype})
        assert status == 202, data
        jobs.append(json.loads(data))
    for job in jobs:
        status, _, events = client.request("GET", job["events_url"])
        names = re.findall(r"^event: (\w+)$", events.decode(), re.M)
        assert status == 200 and names == ["stage"] * 4 + ["done"], (events[-400:], deployment.log()[-6000:])
        status, hdrs, jpeg = client.request("GET", job["result_url"])
        assert status == 200 and hdrs["content-type"] == "image/jpeg"
    r = redis.Redis(unix_socket_path=socket_path)
    owners = {json.loads(r.get(f"{PREFIX}job:{j['id']}") or "{}")["owner"] for j in jobs}
    assert owners and all(o.count(":") == 3 for o in owners)


def _post(deployment: LocalDeployment, body: bytes, headers: dict[str, str]) -> http.client.HTTPSConnection:
    port = deployment.config["node1"]["https_port"]
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=client_context(), timeout=REQUEST_TIMEOUT_S)
    conn.request("POST", "/api/tryon", body=body, headers=headers)
    return conn


def _catch_running(r: redis.Redis, key: str) -> dict | None:
    """Wait until the key's job runs (then return it) or has finished (None: too late to kill it)."""
    deadline = time.monotonic() + CATCH_TIMEOUT_S
    while time.monotonic() < deadline:
        job = job_of_key(r, PREFIX, key)
        if job is not None and job["state"] == "running":
            return job
        if job is not None and job["state"] in ("done", "failed"):
            return None
        time.sleep(0.005)
    return None


def _state(r: redis.Redis, deployment: LocalDeployment) -> str:
    keys = {k.decode(): (r.get(k) or b"").decode() for k in r.scan_iter(match=f"{PREFIX}idem:*")}
    jobs = [json.loads(r.get(k) or "{}") for k in r.scan_iter(match=f"{PREFIX}job:*")]
    brief = [(j.get("id"), j.get("state"), j.get("owner"), (j.get("error") or {}).get("code")) for j in jobs]
    return f"keys={keys}\njobs={brief}\nlog:\n{deployment.log()[-5000:]}"


def test_kill_9_of_a_worker_mid_tryon_loses_nothing(deployment: LocalDeployment, client: WebClient,
                                                    astronaut: np.ndarray, socket_path: str) -> None:
    r = redis.Redis(unix_socket_path=socket_path)
    arbiter = deployment.children()["node1.web"]
    port = deployment.config["node1"]["https_port"]
    body, ctype = multipart({"garment": _red(client)}, {"photo": ("a.jpg", _jpeg(astronaut))})
    for attempt in range(KILL_ATTEMPTS):
        key = f"e2e-kill-9-{attempt}-{time.time_ns()}"
        headers = {"Content-Type": ctype, "Idempotency-Key": key}
        workers = children(arbiter)
        conn = _post(deployment, body, headers)
        job = _catch_running(r, key)
        if job is None:                        # it finished before we caught it running: again
            conn.getresponse().read()
            conn.close()
            continue
        victim = owner_pid(job)
        assert victim in workers
        inode = server_socket_inode(port, conn.sock.getsockname()[1])
        assert inode is not None and holder_of(workers, inode) == victim   # the job runs where the POST landed
        os.kill(victim, signal.SIGKILL)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, http.client.IncompleteRead)):
            conn.getresponse().read()          # no HTTP response
        conn.close()
        status, _, data = client.request("POST", "/api/tryon", body, headers)     # what the page does
        assert status == 200, (data, _state(r, deployment))
        redone = json.loads(data)
        assert redone["id"] != job["id"], _state(r, deployment)
        status, _, lost = client.request("GET", f"/api/jobs/{job['id']}")
        assert json.loads(lost)["error"]["code"] == "worker_lost"
        status, _, jpeg = client.request("GET", redone["result_url"])
        assert status == 200 and jpeg[:2] == b"\xff\xd8"
        status, _, again = client.request("POST", "/api/tryon", body, headers)
        assert status == 200 and json.loads(again)["id"] == redone["id"], _state(r, deployment)   # no third run
        deadline = time.monotonic() + RESPAWN_TIMEOUT_S
        while len(children(arbiter)) < 2 or victim in children(arbiter):
            assert time.monotonic() < deadline, "gunicorn did not replace the killed worker"
            time.sleep(0.1)
        return
    pytest.fail(f"in {KILL_ATTEMPTS} attempts no try-on was caught running in a worker")


def test_stop_leaves_no_redis_and_no_socket(deployment: LocalDeployment, socket_path: str) -> None:
    wrapper = deployment.children()["node1.redis"]            # mirror.redis_server; redis-server is its child
    servers = children(wrapper)
    assert len(servers) == 1 and f"redis-server unixsocket:{socket_path}" in _cmdline(servers[0])
    assert deployment.stop() == 0
    assert not Path(socket_path).exists()
    for pid in (wrapper, servers[0]):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
