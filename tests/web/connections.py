"""Which process holds a TCP connection, and which job a worker runs: for the worker-kill tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import redis


def server_socket_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server side of 127.0.0.1:client_port -> 127.0.0.1:server_port."""
    want_local, want_remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[1] == want_local and cols[2] == want_remote:
            return cols[9]
    return None


def holder_of(pids: list[int], inode: str) -> int | None:
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


def job_of_key(r: redis.Redis, prefix: str, key: str, client: str = "127.0.0.1") -> dict | None:
    """The job record the Idempotency-Key `key` (sent from `client`) names in Redis, or None yet."""
    job_id = r.get(f"{prefix}idem:{client}|{key}")
    raw = r.get(f"{prefix}job:{job_id.decode()}") if job_id else None
    return json.loads(raw) if raw else None


def owner_pid(job: dict) -> int:
    """The pid of the worker process running `job` (its owner id is host:pid:start-time:random)."""
    return int(job["owner"].split(":")[1])
