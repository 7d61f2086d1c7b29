"""Run a whole deployment as a child process, for end-to-end tests, benchmarks and fault drills.

    with LocalDeployment(tmp_dir, overrides={"limits": {"rate_limit_per_min": 100000}}) as dep:
        dep.url            # https://127.0.0.1:PORT/
        dep.cafile         # the node-1 certificate to trust
        dep.children()     # {"gvirtus.backend": pid, ...} as reported ready
        dep.log()          # everything it printed so far

It writes a copy of env_config.json on free loopback ports with its own tokens and var/ under
`work_dir`, runs `start_application.sh` (bootstrap + supervisor) in its own process group,
waits for "Virtual Mirror is up", and on exit stops it the way a terminal's Ctrl-C does.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from mirror.errors import LaunchError

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 40.0
UP_PATTERN = re.compile(r"Virtual Mirror is up: (\S+)")
READY_PATTERN = re.compile(r"mirror\.launch req=\S+ INFO (\S+) ready: (\{.*\})$")


def free_ports(n: int) -> list[int]:
    """n TCP ports on 127.0.0.1 that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _parent_map() -> dict[int, list[int]]:
    """ppid -> pids of the live processes, read from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry))
    return parents


def children(pid: int) -> list[int]:
    """The direct children of pid."""
    return _parent_map().get(pid, [])


def descendants(pid: int) -> list[int]:
    """Every live descendant of pid, found by walking /proc (children run in their own sessions)."""
    parents = _parent_map()
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in out:
                out.append(child)
                todo.append(child)
    return out


def write_config(work_dir: Path, overrides: dict[str, Any] | None = None) -> Path:
    """A copy of env_config.json on free loopback ports, with tokens and var/ under work_dir."""
    work_dir.mkdir(parents=True, exist_ok=True)
    cfg = json.loads((ROOT / "env_config.json").read_text())
    p = free_ports(7)
    cfg["node1"]["https_port"] = p[0]
    cfg["node2"].update(gvirtus_port=p[1], gateway_port=p[2], health_port=p[3])
    cfg["viton"]["port"] = p[4]
    cfg["transport"]["rdma"]["rdma_port"] = p[5]
    cfg["node2"]["gvirtus_data_port"] = p[6]
    for name in ("gvirtus.token", "operator.token"):
        (work_dir / name).write_text("test-token-" + name)
        (work_dir / name).chmod(0o600)
    cfg["gvirtus"]["token_file"] = str(work_dir / "gvirtus.token")
    cfg["node1"]["operator_token_file"] = str(work_dir / "operator.token")
    cfg["paths"]["var_dir"] = str(work_dir / "var")
    for section, values in (overrides or {}).items():
        if isinstance(values, dict) and isinstance(cfg.get(section), dict):
            cfg[section].update(values)
        else:
            cfg[section] = values
    path = work_dir / "env_config.json"
    path.write_text(json.dumps(cfg, indent=2))
    return path


class LocalDeployment:
    """start_application.sh in a child process group; see the module docstring."""

    def __init__(self, work_dir: str | os.PathLike[str], overrides: dict[str, Any] | None = None,
                 args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        self.work_dir = Path(work_dir)
        self.config_path = write_config(self.work_dir, overrides)
        self.config = json.loads(self.config_path.read_text())
        self.args = args
        self.env = dict(os.environ, VM_CONFIG=str(self.config_path), VM_SKIP_APT="1", PYTHONUNBUFFERED="1",
                        **(env or {}))
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self._lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._ready: dict[str, dict[str, Any]] = {}

    @property
    def cafile(self) -> str:
        return str(self.work_dir / "var" / "tls" / "node1.crt")

    def start(self, timeout_s: float = START_TIMEOUT_S) -> LocalDeployment:
        self.proc = subprocess.Popen([str(ROOT / "start_application.sh"), *self.args], cwd=ROOT, env=self.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        threading.Thread(target=self._pump, daemon=True).start()
        m = self.wait_for(UP_PATTERN, timeout_s)
        if m is None:
            self.stop()
            raise LaunchError(f"the deployment did not come up within {timeout_s:.0f} s; output:\n"
                              + self.log()[-6000:])
        self.url = m.group(1)
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None  # set in start()
        for line in self.proc.stdout:
            self._lines.append(line)
            rm = READY_PATTERN.search(line.rstrip("\n"))
            if rm:
                self._ready[rm.group(1)] = json.loads(rm.group(2))
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str] | str, timeout_s: float) -> re.Match[str] | None:
        """Wait for a NEW output line matching pattern (lines already read are not searched)."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.25)
            except queue.Empty:
                continue
            if line is None:
                return None
            m = rx.search(line)
            if m:
                return m
        return None

    def log(self) -> str:
        return "".join(self._lines)

    def children(self) -> dict[str, int]:
        """component -> pid of its latest ready instance (restarts update it)."""
        return {name: int(info["pid"]) for name, info in self._ready.items()}

    def ready_info(self, component: str) -> dict[str, Any]:
        return dict(self._ready.get(component, {}))

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """Signal the supervisor's group (as Ctrl-C does); returns its exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for pid in self.children().values():  # belt and braces: nothing may outlive a test
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return int(self.proc.returncode)

    def __enter__(self) -> LocalDeployment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
