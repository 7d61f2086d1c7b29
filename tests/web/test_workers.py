"""Two real gunicorn workers on a real Redis: `kill -9` of the worker running a try-on loses nothing.

The real server (`python -m node1.web`, TLS, `node1.web_processes: 2`, `node1.store: "redis"`) with
the web-layer TEST DOUBLE pipeline slowed to STAGE_DELAY_S per stage, so a try-on is reliably in
flight when its worker is killed. The test finds the worker process holding the request's TCP
connection (/proc), checks in Redis that this worker owns the running job, kills it with SIGKILL,
sees the connection end without an HTTP response, and re-sends the same request with the same
Idempotency-Key (what the page does): the retry gets the try-on, run again once the dead worker's
lease expired; the killed job is `worker_lost`; the key then names the one finished job.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import time

import pytest
import redis

from testing.deployment import children
from tests.web.connections import holder_of, job_of_key, owner_pid, server_socket_inode
from tests.web.server import client_context, multipart, request, start_server

STAGE_DELAY_S = 0.6          # 4 stages: a try-on takes ~2.4 s
KILL_WAIT_S = 10.0
RESPAWN_TIMEOUT_S = 30.0
PREFIX = "w2-"


@pytest.fixture
def two_workers(tmp_path, redis_socket):
    server = start_server(tmp_path, env_extra={"VM_TEST_PIPELINE_DELAY_S": str(STAGE_DELAY_S)},
                          node1={"store": "redis", "web_processes": 2,
                                 "redis": {"unix_socket": redis_socket, "key_prefix": PREFIX}})
    deadline = time.monotonic() + RESPAWN_TIMEOUT_S
    while len(children(server.proc.pid)) < 2:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    yield server
    server.stop()


def test_kill_9_of_the_worker_running_a_tryon_loses_nothing(two_workers, redis_socket, astronaut_jpeg):
    server = two_workers
    r = redis.Redis(unix_socket_path=redis_socket)
    body, ctype = multipart({"garment": "test-red-tee"}, {"photo": ("a.jpg", astronaut_jpeg)})
    headers = {"Content-Type": ctype, "Idempotency-Key": "kill-9-test-key-0001"}
    workers = children(server.proc.pid)
    assert len(workers) == 2

    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=client_context(), timeout=60)
    conn.request("POST", "/api/tryon", body=body, headers=headers)
    deadline = time.monotonic() + KILL_WAIT_S
    while (job := job_of_key(r, PREFIX, headers["Idempotency-Key"])) is None or job["state"] != "running":
        assert time.monotonic() < deadline and (job is None or job["state"] == "queued"), job
        time.sleep(0.02)
    victim = owner_pid(job)
    inode = server_socket_inode(server.port, conn.sock.getsockname()[1])
    assert inode is not None and holder_of(workers, inode) == victim    # the job runs where the POST landed
    os.kill(victim, signal.SIGKILL)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, http.client.IncompleteRead)):
        conn.getresponse().read()          # the connection ended without an HTTP response
    conn.close()

    status, _, retried = request(server, "POST", "/api/tryon", body=body, headers=headers, timeout=60)
    assert status == 200, retried
    redone = json.loads(retried)
    assert redone["id"] != job["id"]                        # re-run: the killed worker's job was lost
    status, hdrs, jpeg = request(server, "GET", redone["result_url"])
    assert status == 200 and hdrs["content-type"] == "image/jpeg" and jpeg[:2] == b"\xff\xd8"
    status, _, lost = request(server, "GET", f"/api/jobs/{job['id']}")
    assert status == 200 and json.loads(lost)["error"]["code"] == "worker_lost"

    t0 = time.monotonic()                                   # the key now names the finished job: no third run
    status, _, again = request(server, "POST", "/api/tryon", body=body, headers=headers, timeout=60)
    assert status == 200 and json.loads(again)["id"] == redone["id"]
    assert time.monotonic() - t0 < STAGE_DELAY_S * 4
    done = [json.loads(r.get(k) or "{}") for k in r.scan_iter(match=f"{PREFIX}job:*")]
    assert sorted(j["state"] for j in done) == ["done", "failed"]   # one lost, one done: nothing ran twice

    deadline = time.monotonic() + RESPAWN_TIMEOUT_S          # gunicorn replaced the dead worker
    while len(children(server.proc.pid)) < 2 or victim in children(server.proc.pid):
        assert time.monotonic() < deadline
        time.sleep(0.1)
