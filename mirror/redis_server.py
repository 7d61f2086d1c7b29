"""Node 1's Redis (`node1.store: "redis"`, `node1.redis.managed`): Debian's redis-server, memory only.

    python -m mirror.redis_server        (what mirror.launch runs before node1.web)

Runs `redis-server` as its child with persistence off (`--save ''`, `--appendonly no`: nothing
reaches a disk), bound to a unix socket (default <paths.var_dir>/redis/redis.sock, in a mode 0700
folder, socket mode 0700: only this user can connect, so no password is needed) or to loopback
(`node1.redis.host`/`port`, loopback only), with `--maxmemory node1.redis.maxmemory_mb` and
`volatile-ttl` eviction (the keys nearest their expiry go first). It reports ready once Redis
answers PING, and on SIGTERM stops Redis (SHUTDOWN NOSAVE by signal) and removes the socket.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from mirror.config import load as load_config
from mirror.config import redis_address
from mirror.errors import ConfigError
from mirror.lifecycle import notify_ready
from mirror.logs import setup as setup_logging

COMPONENT = "node1.redis"
REDIS_BINARY = "redis-server"
START_TIMEOUT_S = 20.0
PING_INTERVAL_S = 0.05
PING_TIMEOUT_S = 1.0
STOP_TIMEOUT_S = 5.0
SOCKET_DIR_MODE = 0o700

log = logging.getLogger(COMPONENT)


def redis_argv(address: str | tuple[str, int], maxmemory_mb: int, binary: str, work_dir: Path) -> list[str]:
    """The redis-server command line: memory only, one address, no persistence (`work_dir` stays empty)."""
    argv = [binary, "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
            "--maxmemory", f"{maxmemory_mb}mb", "--maxmemory-policy", "volatile-ttl", "--loglevel", "warning",
            "--logfile", "", "--dir", str(work_dir)]
    if isinstance(address, str):
        sock = Path(address)
        return argv + ["--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700"]
    host, port = address
    return argv + ["--bind", host, "--port", str(port)]


def ping(address: str | tuple[str, int], timeout_s: float = PING_TIMEOUT_S) -> bool:
    """True when Redis at `address` answers PING (plain RESP over a socket; no client library)."""
    try:
        if isinstance(address, str):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: str | tuple[str, int] = address
        else:
            s = socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET, socket.SOCK_STREAM)
            target = address
        with s:
            s.settimeout(timeout_s)
            s.connect(target)
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def prepare_socket_dir(sock: Path) -> None:
    """The socket's folder, mode 0700; a stale socket (left by a killed Redis) is removed."""
    sock.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(sock.parent, SOCKET_DIR_MODE)
    if sock.exists() or sock.is_symlink():
        if ping(str(sock)):
            raise ConfigError(f"a Redis already answers on {sock}; stop it or set node1.redis.managed = false")
        sock.unlink()


def run(address: str | tuple[str, int], maxmemory_mb: int, work_dir: Path) -> int:
    binary = shutil.which(REDIS_BINARY)
    if binary is None:
        raise ConfigError(f"node1.store = \"redis\" needs {REDIS_BINARY} (Debian package redis-server; "
                          "scripts/bootstrap.sh installs it as root), or node1.redis.managed = false "
                          "with a Redis of your own")
    if isinstance(address, str):
        prepare_socket_dir(Path(address))
    work_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(work_dir, SOCKET_DIR_MODE)
    proc = subprocess.Popen(redis_argv(address, maxmemory_mb, binary, work_dir), stdin=subprocess.DEVNULL)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ping(address):
            if proc.poll() is not None:
                log.error("redis-server exited with status %s while starting", proc.returncode)
                return 1
            if time.monotonic() > deadline or stop.wait(PING_INTERVAL_S):
                log.error("redis-server did not answer PING within %.0f s", START_TIMEOUT_S)
                return 1
        listen = f"unix:{address}" if isinstance(address, str) else f"{address[0]}:{address[1]}"
        log.info("redis-server %s ready on %s (memory only, persistence off)", proc.pid, listen)
        notify_ready(COMPONENT, listen=listen)
        while not stop.wait(0.2):
            if proc.poll() is not None:
                log.error("redis-server exited with status %s", proc.returncode)
                return 1
        return 0
    finally:
        _stop(proc)
        if isinstance(address, str) and Path(address).exists():
            Path(address).unlink(missing_ok=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()   # SIGTERM: Redis shuts down; with no save points it writes nothing
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> int:
    setup_logging(COMPONENT, node="node1")
    try:
        cfg = load_config()
        return run(redis_address(cfg), int(cfg["node1"]["redis"]["maxmemory_mb"]),
                   cfg.path(cfg["paths"]["var_dir"]) / "redis")
    except ConfigError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
