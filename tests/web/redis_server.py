"""A real redis-server for tests (Debian's `redis-server`), memory only, on a unix socket.

Skips (with the reason) only when the redis-server binary is not installed: scripts/bootstrap.sh
installs it as root.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.redis_server import ping, prepare_socket_dir, redis_argv

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
MAXMEMORY_MB = 256


def run_redis(work_dir: Path) -> Iterator[str]:
    """Start redis-server on `work_dir`/redis.sock, yield the socket path, stop it."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian package redis-server; scripts/bootstrap.sh as root)")
    sock = work_dir / "s" / "redis.sock"
    prepare_socket_dir(sock)
    proc = subprocess.Popen(redis_argv(str(sock), MAXMEMORY_MB, binary, work_dir), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ping(str(sock)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on {sock} (status {proc.poll()})")
            time.sleep(0.02)
        yield str(sock)
    finally:
        proc.terminate()
        proc.wait(timeout=STOP_TIMEOUT_S)
