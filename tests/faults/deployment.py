"""A real LOCAL deployment for fault tests and benchmarks: `start_application.sh` on free ports.

    dep = Deployment.start(tmp_dir, limits={"request_timeout_s": 60})
    dep.url, dep.config, dep.cfg                      # https://127.0.0.1:<port>, config path, dict
    dep.children()                                    # {"viton.service": pid, ...} (the supervisor's)
    dep.kill_child("viton.service")                   # kill -9; returns the old pid
    dep.wait_ready_after("viton.service", mark)       # the restarted child said READY again
    dep.process_stats()                               # rss / open fds of every process of the deployment
    dep.stop()

Children are found by walking /proc from the supervisor's pid (never by name across the machine:
other deployments may be running). Also `start(role=...)` runs one role (DISTRIBUTED), with an
optional command prefix (e.g. `ip netns exec NS`) to place it in a network namespace.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from testing import deployment as mirror_deployment
from testing.deployment import children, descendants, free_ports

__all__ = ["Deployment", "free_ports", "write_config"]

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 40.0
COMPONENTS = ("gvirtus.backend", "viton.service", "node2.gateway", "node1.web")
UP_LINE = re.compile(r"Virtual Mirror is up: (\S+)")


def write_config(tmp: Path, overrides: dict[str, Any] | None = None) -> tuple[Path, dict[str, Any]]:
    """A copy of env_config.json on free loopback ports with its own tokens and var_dir."""
    path = mirror_deployment.write_config(tmp, overrides)
    return path, json.loads(path.read_text())


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def proc_stats(pid: int) -> dict[str, Any] | None:
    """rss (MB) and open file descriptors of one process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration, ValueError):
        return None
    return {"pid": pid, "rss_mb": round(rss_kb / 1024, 1), "fds": fds}


@dataclass
class Deployment:
    proc: subprocess.Popen[str]
    config: Path
    cfg: dict[str, Any]
    url: str = ""
    lines: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, tmp: Path, *, role: str | None = None, prefix: list[str] | None = None,
              config: tuple[Path, dict[str, Any]] | None = None, env: dict[str, str] | None = None,
              timeout_s: float = START_TIMEOUT_S, **overrides: Any) -> Deployment:
        """Run start_application.sh (all roles, or `role`) and wait until it is serving."""
        path, cfg = config or write_config(tmp, overrides)
        run_env = dict(os.environ, VM_CONFIG=str(path), VM_SKIP_APT="1", PYTHONUNBUFFERED="1",
                       OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"), **(env or {}))
        args = [*(prefix or []), str(ROOT / "start_application.sh"), *(["--role", role] if role else [])]
        proc = subprocess.Popen(args, cwd=ROOT, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        dep = cls(proc, path, cfg)
        threading.Thread(target=dep._pump, daemon=True).start()
        want = {"node1": ["node1.web"], "node2": ["node2.gateway"], None: ["node1.web"]}.get(role, [])
        try:
            dep._wait_for(lambda: all(dep.ready_count(c) for c in want), timeout_s)
        except BaseException:
            dep.stop()
            raise
        m = next((UP_LINE.search(line) for line in dep.lines if UP_LINE.search(line)), None)
        dep.url = m.group(1).rstrip("/") if m else f"https://127.0.0.1:{cfg['node1']['https_port']}"
        return dep

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    def _wait_for(self, predicate: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if self.proc.poll() is not None:
                raise RuntimeError(f"start_application.sh exited ({self.proc.returncode}):\n{self.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"deployment not ready within {timeout_s:.0f} s:\n{self.tail()}")
            time.sleep(0.2)

    def tail(self, n: int = 40) -> str:
        with self._lock:
            return "\n".join(self.lines[-n:])

    def mark(self) -> int:
        """A position in the log; `ready_count(c, since=mark)` counts READY lines after it."""
        with self._lock:
            return len(self.lines)

    def ready_count(self, component: str, since: int = 0) -> int:
        """How many times `component` announced itself ready (its own `... <component> req=- INFO ready:` line)."""
        needle = f" {component} req=- INFO ready:"
        with self._lock:
            return sum(needle in line for line in self.lines[since:])

    def wait_ready_after(self, component: str, since: int, timeout_s: float = 120.0) -> float:
        """Wait until `component` said READY after log position `since`; returns the seconds waited."""
        t0 = time.monotonic()
        self._wait_for(lambda: self.ready_count(component, since) > 0, timeout_s)
        return time.monotonic() - t0

    def children(self) -> dict[str, int]:
        """The supervisor's live children by component name."""
        sup = self.supervisor_pid()
        out: dict[str, int] = {}
        for pid in children(sup) if sup else []:
            cmd = cmdline(pid)
            for comp in COMPONENTS:
                if f"-m {comp}" in cmd:
                    out[comp] = pid
        return out

    def supervisor_pid(self) -> int | None:
        # start_application.sh execs `python -m mirror.launch`, so the shell's pid is the supervisor's.
        return self.proc.pid if "mirror.launch" in cmdline(self.proc.pid) else None

    def kill_child(self, component: str) -> int:
        pid = self.children()[component]
        os.kill(pid, signal.SIGKILL)
        return pid

    def process_stats(self) -> dict[str, dict[str, Any]]:
        """rss/fds of the supervisor and every descendant, keyed "name" or "name/worker"."""
        out: dict[str, dict[str, Any]] = {}
        sup = self.proc.pid
        st = proc_stats(sup)
        if st:
            out["supervisor"] = st
        for pid in descendants(sup):
            cmd = cmdline(pid)
            name = next((c for c in COMPONENTS if f"-m {c}" in cmd), cmd[:40] or str(pid))
            if name in out:
                name = f"{name}/worker"
            st = proc_stats(pid)
            if st:
                out[name] = st
        return out

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            family = descendants(self.proc.pid)
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                for pid in [self.proc.pid, *family]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.proc.wait()
            except ProcessLookupError:
                pass
        return self.proc.returncode


def astronaut_jpeg(quality: int = 90) -> bytes:
    """scikit-image's astronaut (a real photo of a person) as JPEG bytes."""
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, "JPEG", quality=quality)
    return buf.getvalue()
