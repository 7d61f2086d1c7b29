"""Start `python -m node2.gateway` as a real process and wait for its READY line."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from mirror.lifecycle import NOTIFY_ENV, READY_PREFIX

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 20.0


def write_config(path: Path, cfg) -> Path:  # type: ignore[no-untyped-def]
    path.write_text(json.dumps(cfg.as_dict()))
    return path


def start_gateway(config_path: Path, prefix: list[str] | None = None) -> tuple[subprocess.Popen[bytes], dict]:
    """Run the gateway (optionally under `prefix`, e.g. `ip netns exec NS`); returns it and its READY info."""
    r, w = os.pipe()
    env = dict(os.environ, VM_CONFIG=str(config_path), **{NOTIFY_ENV: str(w)}, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([*(prefix or []), sys.executable, "-m", "node2.gateway"], cwd=ROOT, env=env,
                            pass_fds=(w,), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    os.close(w)
    buf = b""
    deadline = time.monotonic() + READY_TIMEOUT_S
    try:
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                stop(proc)
                out = proc.stdout.read() if proc.stdout else b""
                raise RuntimeError(f"gateway not ready in {READY_TIMEOUT_S}s: {out!r}")
            chunk = os.read(r, 4096)
            if not chunk:
                stop(proc)
                raise RuntimeError(f"gateway exited before READY: {proc.stdout.read()!r}")  # type: ignore[union-attr]
            buf += chunk
    finally:
        os.close(r)
    line = buf.decode().splitlines()[0]
    assert line.startswith(READY_PREFIX), line
    return proc, json.loads(line[len(READY_PREFIX):])


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)
