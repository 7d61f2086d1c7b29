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


def running_job_of(r: redis.Redis, prefix: str, pid: int) -> dict | None:
    for key in r.scan_iter(match=f"{prefix}job:*"):
        rec = json.loads(r.get(key) or "{}")
        if rec.get("state") == "running" and rec.get("owner", "").split(":")[1:2] == [str(pid)]:
            return rec
    return None
