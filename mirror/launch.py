"""The supervisor behind start_application.sh: start a role's processes, watch, restart, stop.

    python -m mirror.launch [--role node1|node2|viton|all] [--config PATH] [--no-restart]

Each child is `python -m <module>` in its own process session; it reports readiness through
`mirror.lifecycle.notify_ready`. Children start in dependency order, each waited for before
the next. A child that crashes after start is restarted with capped exponential backoff.
SIGTERM / SIGINT stop every child (SIGTERM, then SIGKILL after STOP_GRACE_S) and nothing is
left running; children also get SIGTERM if the supervisor itself dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mirror import allocator, logs
from mirror import config as config_mod
from mirror.errors import ConfigError, LaunchError
from mirror.lifecycle import NOTIFY_ENV, READY_PREFIX

STARTUP_TIMEOUT_S = 180.0
STOP_GRACE_S = 10.0
POLL_INTERVAL_S = 0.2
RESTART_BACKOFF_INITIAL_S = 0.5
RESTART_BACKOFF_MAX_S = 10.0
STABLE_AFTER_S = 30.0  # a child up this long has its backoff reset
TAIL_LINES = 30
PR_SET_PDEATHSIG = 1

log = logging.getLogger("mirror.launch")


@dataclass
class ChildSpec:
    name: str
    module: str
    node: str
    ports: list[tuple[str, str, int]] = field(default_factory=list)  # (config key, host, port)


def role_specs(cfg: config_mod.Config, role: str) -> list[ChildSpec]:
    """The processes of `role`, in start order."""
    n1, n2, vt = cfg["node1"], cfg["node2"], cfg["viton"]
    bind2 = n2.get("bind_host") or n2["host"]
    gvirtus = ChildSpec("gvirtus.backend", "gvirtus.backend", "node2",
                        [("node2.gvirtus_port", bind2, n2["gvirtus_port"])]
                        + ([("node2.gvirtus_data_port", bind2, n2["gvirtus_data_port"])]
                           if n2["gvirtus_data_port"] else []))
    viton_node = "node1" if role == "node1" else "node2"
    viton_ports = [] if cfg.deployment == "LOCAL" else [("viton.port", bind2, vt["port"])]
    viton = ChildSpec("viton.service", "viton.service", viton_node, viton_ports)
    gateway = ChildSpec("node2.gateway", "node2.gateway", "node2",
                        [("node2.gateway_port", bind2, n2["gateway_port"]),
                         ("node2.health_port", bind2, n2["health_port"])])
    web = ChildSpec("node1.web", "node1.web", "node1", [("node1.https_port", n1["host"], n1["https_port"])])
    redis = _redis_spec(cfg)
    if role == "all":
        return [gvirtus, viton, gateway, *redis, web]
    if role == "node2":
        return [gvirtus, viton, gateway] if vt["placement"] == "node2" else [gvirtus, gateway]
    if role == "node1":
        return [viton, *redis, web] if vt["placement"] == "node1" else [*redis, web]
    if role == "viton":
        return [viton]
    raise LaunchError(f"unknown role {role!r}; use node1, node2, viton or all")


def _redis_spec(cfg: config_mod.Config) -> list[ChildSpec]:
    """node 1's Redis (mirror.redis_server) when `node1.store` is "redis" and it is ours to run."""
    n1 = cfg["node1"]
    if n1["store"] != "redis" or not n1["redis"]["managed"]:
        return []
    address = config_mod.redis_address(cfg)
    ports = [] if isinstance(address, str) else [("node1.redis.port", address[0], address[1])]
    return [ChildSpec("node1.redis", "mirror.redis_server", "node1", ports)]


def check_port_free(key: str, host: str, port: int) -> None:
    """Raise LaunchError if `host:port` cannot be bound (another process holds it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise LaunchError(f"port {port} ({key}) on {host} is not available: {exc.strerror}; "
                              f"stop the process using it or change {key} in env_config.json") from exc


_PRCTL: Callable[..., int] | None
try:
    _PRCTL = ctypes.CDLL("libc.so.6", use_errno=True).prctl  # resolved once, before any fork
except OSError:  # not glibc: children are still stopped by stop_all, just not on supervisor death
    _PRCTL = None


def _set_pdeathsig() -> None:
    # Runs between fork and exec: only a direct libc call (no imports, no locks), so it is safe
    # even though the supervisor has output-pump threads.
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


def threads_per_child(n_children: int, cpus: int | None = None) -> int:
    """Torch/OpenMP threads for each child so that together they do not oversubscribe the CPUs.

    Every child would otherwise start one thread per core: on the 2-core LOCAL machine four
    processes x 2 threads made the try-on p50 271 ms; one thread each made it 207 ms.
    """
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(1, n_children))


class Child:
    """One supervised process: start, read its readiness line and log, stop."""

    def __init__(self, spec: ChildSpec, config_path: str, threads: int = 0) -> None:
        self.spec = spec
        self.config_path = config_path
        self.threads = threads  # OMP_NUM_THREADS for the child unless the operator set it; 0 = leave
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_info: dict | None = None
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.restarts = 0
        self.backoff_s = RESTART_BACKOFF_INITIAL_S
        self.started_at = 0.0
        self._notify_r: int | None = None
        self._ready_buf = b""

    def start(self) -> None:
        r, w = os.pipe()
        env = dict(os.environ, VM_NODE=self.spec.node, VM_CONFIG=self.config_path, **{NOTIFY_ENV: str(w)})
        env.setdefault("PYTHONUNBUFFERED", "1")
        if self.threads:
            env.setdefault("OMP_NUM_THREADS", str(self.threads))
        env = allocator.child_env(env)  # tcmalloc unless VM_ALLOCATOR=system (mirror.allocator)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.spec.module], env=env, pass_fds=(w,),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_set_pdeathsig,  # noqa: PLW1509 (see _set_pdeathsig)
        )
        os.close(w)
        self._notify_r, self._ready_buf, self.ready_info = r, b"", None
        self.started_at = time.monotonic()
        threading.Thread(target=self._pump_output, args=(self.proc,), daemon=True).start()

    def _pump_output(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None  # set by Popen(stdout=PIPE); not an input check
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.tail.append(line)
            sys.stderr.write(line + "\n")
        proc.stdout.close()

    def poll_ready(self, timeout_s: float) -> bool:
        """Read the notify pipe for up to `timeout_s`; True once the READY line arrived."""
        if self.ready_info is not None:
            return True
        if self._notify_r is None:
            return False
        rlist, _, _ = select.select([self._notify_r], [], [], timeout_s)
        if not rlist:
            return False
        chunk = os.read(self._notify_r, 65536)
        if not chunk:  # writer closed without READY (the child died or closed it)
            os.close(self._notify_r)
            self._notify_r = None
            return False
        self._ready_buf += chunk
        for line in self._ready_buf.decode(errors="replace").splitlines():
            if line.startswith(READY_PREFIX):
                self.ready_info = json.loads(line[len(READY_PREFIX):])
                os.close(self._notify_r)
                self._notify_r = None
                return True
        return False

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def signal_group(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self) -> None:
        if self.proc is None:
            return
        self.signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", self.spec.name, STOP_GRACE_S)
        # Kill the whole session: grandchildren (e.g. gunicorn workers) must not survive.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        if self._notify_r is not None:
            os.close(self._notify_r)
            self._notify_r = None

    def last_lines(self) -> str:
        return "\n    ".join(list(self.tail)[-12:]) or "(no output)"


class Supervisor:
    def __init__(self, cfg: config_mod.Config, role: str, restart: bool = True,
                 specs: list[ChildSpec] | None = None) -> None:
        self.cfg = cfg
        self.role = role
        self.restart = restart
        chosen = specs if specs is not None else role_specs(cfg, role)
        threads = threads_per_child(len(chosen))
        self.children = [Child(s, cfg.source, threads) for s in chosen]
        self.stopping = threading.Event()
        self.failed = False

    def start_all(self) -> None:
        for child in self.children:
            for key, host, port in child.spec.ports:
                check_port_free(key, host, port)
        for child in self.children:
            if self.stopping.is_set():
                return
            log.info("starting %s", child.spec.name)
            child.start()
            self._wait_ready(child)

    def _wait_ready(self, child: Child) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not child.poll_ready(POLL_INTERVAL_S):
            code = child.exited()
            if code is not None:
                time.sleep(POLL_INTERVAL_S)  # let the output pump catch the last lines
                raise LaunchError(f"{child.spec.name} exited with status {code} during start; "
                                  f"its last output:\n    {child.last_lines()}")
            if self.stopping.is_set():
                return
            if time.monotonic() > deadline:
                raise LaunchError(f"{child.spec.name} did not report ready within {STARTUP_TIMEOUT_S:.0f} s; "
                                  f"its last output:\n    {child.last_lines()}")
        log.info("%s ready: %s", child.spec.name, json.dumps(child.ready_info))

    def watch(self) -> None:
        """Until stopped: restart crashed children with capped backoff."""
        while not self.stopping.wait(POLL_INTERVAL_S):
            for child in self.children:
                code = child.exited()
                if code is None:
                    if child.ready_info is None:
                        child.poll_ready(0)
                    elif time.monotonic() - child.started_at > STABLE_AFTER_S:
                        child.backoff_s = RESTART_BACKOFF_INITIAL_S
                    continue
                if not self.restart:
                    log.error("%s exited with status %s; not restarting (--no-restart)", child.spec.name, code)
                    self.failed = True
                    self.stopping.set()
                    return
                log.error("%s exited with status %s; restarting in %.1f s", child.spec.name, code, child.backoff_s)
                if self.stopping.wait(child.backoff_s):
                    return
                child.backoff_s = min(child.backoff_s * 2, RESTART_BACKOFF_MAX_S)
                child.restarts += 1
                child.start()

    def stop_all(self) -> None:
        self.stopping.set()
        for child in reversed(self.children):
            child.stop()


def _print_endpoints(sup: Supervisor) -> None:
    for child in sup.children:
        info = child.ready_info or {}
        print(f"  {child.spec.name:<16} {info.get('listen', '?')}", flush=True)
    web = next((c for c in sup.children if c.spec.name == "node1.web"), None)
    if web and web.ready_info:
        print(f"Virtual Mirror is up: {web.ready_info.get('url', web.ready_info.get('listen'))}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="start_application.sh", description=__doc__.split("\n")[0])
    parser.add_argument("--role", choices=["node1", "node2", "viton", "all"], default=None,
                        help="processes to run (default: all when DEPLOYMENT=LOCAL)")
    parser.add_argument("--config", default=None, help="config file (default: $VM_CONFIG or env_config.json)")
    parser.add_argument("--no-restart", action="store_true", help="stop everything when a child exits")
    parser.add_argument("--register", default=None, metavar="URL",
                        help="node 2: register with node 1's pool at URL (https://node1:port; docs/pool.md)")
    args = parser.parse_args(argv)
    if args.register:
        os.environ["VM_REGISTER_URL"] = args.register   # the gateway child reads it (node2.register)
    logs.setup("mirror.launch", node="supervisor")
    try:
        cfg = config_mod.load(args.config)
        log.info("children's allocator: %s", allocator.choice())  # a bad VM_ALLOCATOR stops us here
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    role = args.role or ("all" if cfg.deployment == "LOCAL" else None)
    if role is None:
        print("DEPLOYMENT=DISTRIBUTED: say which role this host runs: --role node1|node2|viton", file=sys.stderr)
        return 2
    try:
        sup = Supervisor(cfg, role, restart=not args.no_restart)
    except LaunchError as exc:
        print(f"launch error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sup.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: sup.stopping.set())
    try:
        sup.start_all()
        if not sup.stopping.is_set():
            _print_endpoints(sup)
            sup.watch()
        code = 1 if sup.failed else 0
    except LaunchError as exc:
        print(f"launch error: {exc}", file=sys.stderr)
        code = 1
    finally:
        sup.stop_all()
        log.info("all processes of role %s stopped", role)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
