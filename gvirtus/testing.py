"""Start a real backend for tests and benchmarks: `python -m gvirtus.backend` on a free loopback port.

    with BackendProcess(token="t0k", quota_mb=64) as backend:
        dev = gvirtus.connect(backend.target, token=backend.token)

The process gets a temporary env_config (a copy of the repository's with node2.host = 127.0.0.1,
the chosen port and the gvirtus.* settings given here) and a token file; readiness is read from
the same notify pipe the supervisor uses. `kill()` simulates a crash, `restart()` starts it again
on the same port. Leaving the `with` block stops it (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gvirtus.errors import GvirtusError
from mirror.allocator import child_env
from mirror.config import DEFAULT_CONFIG_PATH, ROOT
from mirror.lifecycle import NOTIFY_ENV, READY_PREFIX


class RandomToken:
    """Marker for BackendProcess(token=...): make up a fresh random token."""


READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
OUTPUT_TAIL_BYTES = 4000


class BackendStartError(GvirtusError):
    """The test backend did not become ready; the message carries its log tail."""


TCP_INFO_BYTES = 256             # getsockopt buffer for struct tcp_info (Linux)
TCPI_BYTES_ACKED_OFFSET = 120   # struct tcp_info: __u64 tcpi_bytes_acked (Linux >= 4.1), after 120 bytes of fields
TCPI_BYTES_RECEIVED_OFFSET = 128   # __u64 tcpi_bytes_received, right after it


def tcp_bytes_sent(ports: set[int] | frozenset[int], pid: int | str = "self") -> int:
    """Payload bytes this process's TCP connections to ``ports`` (remote ports, any address) have sent and had
    acknowledged, as the kernel counts them (tcp_info.tcpi_bytes_acked): what crossed the wire, whatever
    library wrote it (gRPC's C core included). Connections already closed no longer count; take the
    difference of two readings around the work to measure. Linux only (/proc, TCP_INFO)."""
    return _tcp_counter(ports, pid, TCPI_BYTES_ACKED_OFFSET)


def tcp_bytes_received(ports: set[int] | frozenset[int], pid: int | str = "self") -> int:
    """Payload bytes the same connections have received (tcp_info.tcpi_bytes_received); as tcp_bytes_sent."""
    return _tcp_counter(ports, pid, TCPI_BYTES_RECEIVED_OFFSET)


def _tcp_counter(ports: set[int] | frozenset[int], pid: int | str, offset: int) -> int:
    inodes: dict[int, int] = {}   # socket inode -> remote port
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text(encoding="ascii").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            port = int(cols[2].rsplit(":", 1)[1], 16)
            if port in ports and cols[3] == "01":            # ESTABLISHED
                inodes[int(cols[9])] = port
    total = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd_path in fd_dir.iterdir():
        try:
            target = os.readlink(fd_path)
        except OSError:
            continue
        if not target.startswith("socket:[") or int(target[8:-1]) not in inodes:
            continue
        with socket.socket(fileno=os.dup(int(fd_path.name))) as sock:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, TCP_INFO_BYTES)
        total += struct.unpack_from("<Q", info, offset)[0]
    return total


def backend_ports(device: Any) -> frozenset[int]:
    """The backend ports a gvirtus RemoteDevice talks to: its gRPC port and its data channel's."""
    conn = device._conn
    ports = {int(conn.target.rsplit(":", 1)[1])}
    if conn.open_reply.data_port:
        ports.add(int(conn.open_reply.data_port))
    return frozenset(ports)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class BackendProcess:
    """A `python -m gvirtus.backend` child process on loopback (context manager).

    Args:
        port: default a free one. token: default a fresh random token; None = no token check.
        quota_mb / max_message_mb / device: the gvirtus.* settings. session_timeout_s: the backend's
        --session-timeout-s. tls_cert_file / tls_key_file: PEM files; set both for TLS.
        torch_threads: OMP_NUM_THREADS of the backend (the test machine is small and shared).
    """

    def __init__(self, port: int | None = None, *, token: str | None | type[RandomToken] = RandomToken,
                 quota_mb: int = 1024, session_timeout_s: float = 10.0, device: str = "cpu", max_message_mb: int = 256,
                 tls_cert_file: str | None = None, tls_key_file: str | None = None,
                 torch_threads: int = 1, env: dict[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.token: str | None = secrets.token_urlsafe(16) if isinstance(token, type) else token
        self.target = f"127.0.0.1:{self.port}"
        self._tmp = tempfile.TemporaryDirectory(prefix="gvirtus-test-")
        self.config_path = Path(self._tmp.name) / "env_config.json"
        self.log_path = Path(self._tmp.name) / "backend.log"
        self.session_timeout_s = session_timeout_s
        self.torch_threads = torch_threads
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_info: dict[str, Any] = {}
        self._write_config(quota_mb, device, max_message_mb, tls_cert_file, tls_key_file)

    def _write_config(self, quota_mb: int, device: str, max_message_mb: int, cert: str | None, key: str | None) -> None:
        cfg = json.loads(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
        cfg["DEPLOYMENT"] = "LOCAL"
        cfg["node2"].update(host="127.0.0.1", gvirtus_port=self.port)
        cfg["node2"].pop("bind_host", None)
        others = [cfg["node1"].get("https_port"), cfg["node2"].get("gateway_port"), cfg["node2"].get("health_port"),
                  cfg.get("viton", {}).get("port"), cfg.get("transport", {}).get("rdma", {}).get("rdma_port")]
        if self.port in others:
            raise BackendStartError(f"port {self.port} collides with another service's port in env_config.json")
        token_file = None
        if self.token is not None:
            token_path = Path(self._tmp.name) / "gvirtus.token"
            token_path.write_text(self.token + "\n", encoding="utf-8")
            token_file = str(token_path)
        cfg["gvirtus"] = {"secure": bool(cert), "token_file": token_file, "tls_cert_file": cert,
                          "tls_key_file": key, "device": device, "session_quota_mb": quota_mb,
                          "max_message_mb": max_message_mb}
        cfg["node1"]["operator_token_file"] = None
        self.config_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")

    def start(self) -> BackendProcess:
        r, w = os.pipe()
        env = {k: v for k, v in os.environ.items() if k not in ("VM_GVIRTUS_TOKEN",) and not k.startswith("VM__")}
        env.update(VM_CONFIG=str(self.config_path), VM_NODE="node2", PYTHONUNBUFFERED="1",
                   OMP_NUM_THREADS=str(self.torch_threads), **{NOTIFY_ENV: str(w)}, **self.extra_env)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env = child_env(env)  # the allocator a deployed backend runs on (mirror.allocator)
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gvirtus.backend", "--session-timeout-s", str(self.session_timeout_s)],
                cwd=str(ROOT), env=env, pass_fds=(w,), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(w)
            log.close()
        try:
            self.ready_info = self._wait_ready(r)
        finally:
            os.close(r)
        return self

    def _wait_ready(self, fd: int) -> dict[str, Any]:
        deadline = time.monotonic() + READY_TIMEOUT_S
        buf = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 4096)
                buf += chunk
                if b"\n" in buf:
                    line = buf.split(b"\n", 1)[0].decode()
                    if line.startswith(READY_PREFIX):
                        return dict(json.loads(line[len(READY_PREFIX):]))
                if not chunk:
                    break
            if self.proc is not None and self.proc.poll() is not None:
                break
        self.stop()
        raise BackendStartError(f"gvirtus backend on port {self.port} did not become ready; log:\n{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return self.log_path.read_bytes()[-OUTPUT_TAIL_BYTES:].decode(errors="replace")
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """Simulate a crash: SIGKILL, no cleanup."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT_S."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> BackendProcess:
        self.stop()
        return self.start()

    def __enter__(self) -> BackendProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self._tmp.cleanup()
