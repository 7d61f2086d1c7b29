"""Start `python -m node1.web` (real gunicorn over TLS) for tests, and talk HTTPS to it."""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mirror.config import ROOT
from tests.web.conftest import make_config_dict

READY_TIMEOUT_S = 40.0
STOP_TIMEOUT_S = 15.0
TEST_FACTORY = "tests.web.doubles:build_for_tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    var_dir: Path
    log_path: Path
    ready: dict[str, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return int(self.proc.returncode)


def start_server(tmp_path: Path, env_extra: dict[str, str] | None = None, **cfg_over: Any) -> Server:
    port = free_port()
    cfg = make_config_dict(tmp_path, port=port, **cfg_over)
    cfg_path = tmp_path / "env_config.json"
    cfg_path.write_text(json.dumps(cfg))
    r, w = os.pipe()
    env = dict(os.environ, VM_CONFIG=str(cfg_path), VM_RUNNER_FACTORY=TEST_FACTORY, VM_NOTIFY_FD=str(w),
               PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.update(env_extra or {})
    log_path = tmp_path / "web.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "node1.web"], cwd=ROOT, env=env, pass_fds=(w,),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    os.close(w)
    server = Server(proc, port, Path(cfg["paths"]["var_dir"]), log_path)
    buf = b""
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                server.stop()
                raise RuntimeError(f"node1.web did not report ready (rc={proc.poll()}):\n{server.log()}")
            if select.select([r], [], [], min(left, 0.5))[0]:
                chunk = os.read(r, 4096)
                if not chunk:
                    continue
                buf += chunk
    finally:
        os.close(r)
    line = buf.split(b"\n")[0].decode()
    server.ready = json.loads(line.removeprefix("READY "))
    return server


def client_context(**kw: Any) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def request(server: Server, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=client_context(), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
