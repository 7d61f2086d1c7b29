"""Run the roles as containers from the local images: `start_application.sh --containers [--role R]`.

    python3 -I mirror/containers.py [--role node1|node2|viton|all] [--config PATH] [--project NAME]
                                    [--tag TAG] [--health-timeout S]

Standard library only, run by the system's python3 (a host that only runs containers needs no
.venv): it drives the podman or docker CLI. The same env_config.json as the source checkout's:

* DEPLOYMENT=LOCAL (no --role): three containers, viton, node2 and node1, on a private network
  (`<project>-net`, names `viton` and `node2`); only node 1's HTTPS port and node 2's health port
  are published, on the configured hosts. DISTRIBUTED (--role R): the role's containers on the
  host's network (RDMA needs it; no NAT between the nodes), with the configured addresses.
* Files the config names (tokens, TLS, CurveZMQ keys) and the config itself are copied into a
  private folder owned by the images' user (uid 10001, mode 0400), mounted read-only, and removed
  at stop; `paths.var_dir` becomes the named volume `<project>-var` (node 1's certificate, the
  garment catalog), the garment drop folder is bind-mounted, the models are the image's.
* Start order viton + node2, then node1, each waited for until its HEALTHCHECK passes; then it prints
  the URL and waits. Ctrl-C / SIGTERM stops and removes the containers and the network; the
  restart policy (unless-stopped) brings back a container whose process dies.

Errors (exit 1, nothing left running; 2 for a bad command line or config file): a missing image
(with the build command), a missing secret file, a port in use, a container that exits or does not
become healthy within --health-timeout (with its last log lines).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING


def _sibling(name: str) -> ModuleType:
    """Load mirror/<name>.py by path: run as a script, this file cannot import the mirror package
    (its __init__ needs the venv's jsonschema)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {name}.py next to {__file__}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


if TYPE_CHECKING or __package__:
    from mirror import container_plan as cp
else:  # python3 -I mirror/containers.py
    cp = _sibling("container_plan")

ContainerError = cp.ContainerError
ROOT = cp.ROOT
HEALTH_TIMEOUT_S = 180.0
HEALTH_POLL_S = 0.5
WATCH_POLL_S = 2.0
ENGINE_TIMEOUT_S = 120.0
PASS_ENV = ("DEPLOYMENT", "VM_ALLOCATOR", "OMP_NUM_THREADS", "VM_GVIRTUS_TOKEN", "VM_OPERATOR_TOKEN")
UP_LINE = "Virtual Mirror is up: {url}"
# The LOCAL network never leaves this host: loopback's MTU instead of 1500 (tensors node 1 -> node 2
# in fewer packets; measured transfer stage p50 20.6 -> 15.9 ms, bench/RESULTS.md).
LOCAL_NETWORK_MTU = 65520


class Engine:
    """The podman or docker CLI (VM_CONTAINER_ENGINE, else podman when installed, else docker)."""

    def __init__(self, name: str | None = None) -> None:
        name = name or os.environ.get("VM_CONTAINER_ENGINE") or next(
            (n for n in ("podman", "docker") if shutil.which(n)), "")
        if not name or not shutil.which(name):
            raise ContainerError("no container engine: install podman (apt-get install podman runc "
                                 "golang-github-containernetworking-plugin-dnsname) or docker, "
                                 "or set VM_CONTAINER_ENGINE")
        self.name = name
        self.env = dict(os.environ)
        if name == "podman" and "CONTAINERS_CONF" not in self.env and shutil.which("runc"):
            self.env["CONTAINERS_CONF"] = str(ROOT / "deploy" / "containers.conf")  # see that file

    def __call__(self, *args: str, check: bool = True, timeout_s: float = ENGINE_TIMEOUT_S
                 ) -> subprocess.CompletedProcess[str]:
        # Own session: a terminal's Ctrl-C reaches the launcher, which then stops everything in order.
        done = subprocess.run([self.name, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout_s, start_new_session=True)
        if check and done.returncode != 0:
            raise ContainerError(f"{self.name} {' '.join(args[:3])} ... failed (exit {done.returncode}): "
                                 f"{_clean(done.stderr)[-1500:]}")
        return done

    def image_exists(self, image: str) -> bool:
        return self("image", "inspect", "--format", "{{.Id}}", image, check=False).returncode == 0

    def state(self, name: str) -> tuple[str, int, int]:
        """(status, exit code, restart count) of a container; status "missing" when there is none."""
        fmt = "{{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}"
        done = self("inspect", "--type", "container", "--format", fmt, name, check=False)
        if done.returncode != 0:
            return "missing", 0, 0
        status, code, restarts = (done.stdout.split() + ["0", "0"])[:3]
        return status, int(code), int(restarts)

    def logs(self, name: str, lines: int = 15) -> str:
        done = self("logs", "--tail", str(lines), name, check=False)
        text = (done.stdout + done.stderr).strip()
        return "\n    ".join(text.splitlines()[-lines:]) or "(no output)"


def _clean(stderr: str) -> str:
    # podman without systemd says this on every run of an image with a HEALTHCHECK; we probe ourselves.
    return "\n".join(x for x in stderr.splitlines() if "systemd connection" not in x).strip()


class ContainerDeployment:
    """The containers of this host's roles: start (checked, in order, waited for healthy) and stop."""

    def __init__(self, cfg: cp.HostConfig, role: str | None, *, engine: Engine, project: str, tag: str,
                 health_timeout_s: float = HEALTH_TIMEOUT_S) -> None:
        self.cfg = cfg
        self.roles, self.private_net = cp.roles_here(cfg, role)
        self.engine = engine
        self.project = project
        self.tag = tag
        self.health_timeout_s = health_timeout_s
        self.specs: list[cp.ContainerSpec] = []
        self.started: list[str] = []
        self.network_made = False
        self.staging: Path | None = None
        self.restarts: dict[str, int] = {}

    @property
    def url(self) -> str | None:
        if "node1" not in self.roles:
            return None
        host = str(self.cfg.get("node1", "host"))
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return f"https://{cp.publish_host(host)}:{int(self.cfg.get('node1', 'https_port'))}/"

    def start(self, stopping: threading.Event) -> None:
        for role in self.roles:
            image = f"{cp.IMAGE_PREFIX}{role}:{self.tag}"
            if not self.engine.image_exists(image):
                raise ContainerError(f"image {image} is not here: build the images with scripts/build_images.sh "
                                     f"or load them (scripts/images_transfer.sh load FILE); {self.engine.name} "
                                     f"images lists what is here")
        for name in (f"{self.project}-{r}" for r in self.roles):
            if self.engine.state(name)[0] != "missing":
                raise ContainerError(f"a container named {name} exists already; stop it first "
                                     f"({self.engine.name} rm -f {name}) or choose another --project")
        self.staging = Path(tempfile.mkdtemp(prefix=f"{self.project}-secrets-", dir=_private_tmp()))
        passthrough = {k: v for k, v in os.environ.items() if k in PASS_ENV or k.startswith("VM__")}
        self.specs = cp.plan(self.cfg, self.roles, private_net=self.private_net, project=self.project,
                             tag=self.tag, secrets=cp.stage_secrets(self.cfg, self.staging), env=passthrough)
        for spec in self.specs:
            for key, host, port in spec.host_ports:
                cp.check_port_free(key, host, port)
        if self.private_net:
            mtu = "mtu" if self.engine.name == "podman" else "com.docker.network.driver.mtu"
            self.engine("network", "create", "--opt", f"{mtu}={LOCAL_NETWORK_MTU}",
                        "--label", f"io.virtual-mirror.project={self.project}", f"{self.project}-net")
            self.network_made = True
        waves = [[s for s in self.specs if s.role != "node1"], [s for s in self.specs if s.role == "node1"]]
        for wave in waves:
            for spec in wave:
                if stopping.is_set():
                    return
                self.started.append(spec.name)  # before run: a run that fails half-way may leave it created
                self.engine(*spec.run_args(self.engine.name, self.project))
            for spec in wave:
                self._wait_healthy(spec, stopping)
        self._export_certificate()

    def _wait_healthy(self, spec: cp.ContainerSpec, stopping: threading.Event) -> None:
        deadline = time.monotonic() + self.health_timeout_s
        last = ""
        while not stopping.is_set():
            status, code, restarts = self.engine.state(spec.name)
            if status not in ("running", "created", "starting") or restarts:
                raise ContainerError(f"container {spec.name} stopped while starting (status {status}, exit code "
                                     f"{code}, restarts {restarts}); its last output:\n    "
                                     f"{self.engine.logs(spec.name)}")
            probe = self.engine("exec", spec.name, "python", f"{cp.APP}/deploy/healthcheck.py", check=False)
            if probe.returncode == 0:
                print(f"  {spec.name:<24} healthy: {probe.stdout.strip()}", flush=True)
                return
            last = _clean(probe.stderr) or probe.stdout
            if time.monotonic() > deadline:
                raise ContainerError(f"container {spec.name} did not become healthy within "
                                     f"{self.health_timeout_s:.0f} s (last probe: {last.strip()[-300:]}); "
                                     f"its last output:\n    {self.engine.logs(spec.name)}")
            stopping.wait(HEALTH_POLL_S)

    def _export_certificate(self) -> None:
        """Copy node 1's self-signed certificate (public) to <var_dir>/tls/ here, where clients look."""
        if "node1" not in self.roles or self.cfg.data.get("node1", {}).get("cert_file"):
            return
        tls = self.cfg.host_path(str(self.cfg.get("paths", "var_dir"))) / "tls"
        tls.mkdir(parents=True, exist_ok=True)
        self.engine("cp", f"{self.project}-node1:{cp.APP}/var/tls/node1.crt", str(tls / "node1.crt"))

    def watch(self, stopping: threading.Event) -> None:
        """Until stopped: say when the restart policy brought a container back."""
        while not stopping.wait(WATCH_POLL_S):
            for name in self.started:
                restarts = self.engine.state(name)[2]
                if restarts != self.restarts.get(name, 0):
                    print(f"{name}: restarted by its restart policy ({restarts} so far)", file=sys.stderr, flush=True)
                    self.restarts[name] = restarts

    def stop(self) -> None:
        """Stop and remove the containers (at once) and the network this deployment made; drop the staged secrets."""
        names = [n for n in self.started if self.engine.state(n)[0] != "missing"]  # never another's container
        if names:  # stop (SIGTERM, all at once; the restart policy leaves stopped ones alone), then remove
            self.engine("stop", "-t", str(cp.STOP_TIMEOUT_S), *names, check=False,
                        timeout_s=ENGINE_TIMEOUT_S + cp.STOP_TIMEOUT_S)
            self.engine("rm", "-f", *names, check=False)
        if self.network_made:
            self.engine("network", "rm", f"{self.project}-net", check=False)
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)


def _private_tmp() -> str | None:
    """/run (tmpfs, root only) for the staged secrets when writable, else the default temp folder."""
    return "/run" if os.access("/run", os.W_OK) else None


def image_tag() -> str:
    """VM_IMAGE_TAG, else the project version (the tag scripts/build_images.sh gives)."""
    if os.environ.get("VM_IMAGE_TAG"):
        return os.environ["VM_IMAGE_TAG"]
    m = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8"), re.M)
    return m.group(1) if m else "latest"


def main(argv: list[str] | None = None) -> int:
    doc = (__doc__ or "").split("\n")[0]
    ap = argparse.ArgumentParser(prog="start_application.sh --containers", description=doc)
    ap.add_argument("--role", choices=[*cp.ROLES, "all"], default=None,
                    help="this host's role (DISTRIBUTED); default: all three (LOCAL)")
    ap.add_argument("--config", default=None, help="config file (default: $VM_CONFIG or env_config.json)")
    ap.add_argument("--project", default=os.environ.get("VM_CONTAINER_PROJECT", "virtual-mirror"),
                    help="prefix of the containers, network and volume names")
    ap.add_argument("--tag", default=None, help="image tag (default: $VM_IMAGE_TAG or the project version)")
    ap.add_argument("--health-timeout", type=float, default=HEALTH_TIMEOUT_S, metavar="S")
    args = ap.parse_args(argv)
    path = Path(args.config or os.environ.get("VM_CONFIG") or ROOT / "env_config.json")
    try:
        cfg = cp.HostConfig(path, dict(os.environ))
        dep = ContainerDeployment(cfg, args.role, engine=Engine(), project=args.project,
                                  tag=args.tag or image_tag(), health_timeout_s=args.health_timeout)
    except ContainerError as exc:
        print(f"container launch error: {exc}", file=sys.stderr)
        return 2
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    code = 0
    try:
        print(f"starting {', '.join(dep.roles)} with {dep.engine.name} (images :{dep.tag}, "
              f"{'network ' + dep.project + '-net' if dep.private_net else 'host network'})", flush=True)
        dep.start(stopping)
        if not stopping.is_set():
            if dep.url:
                print(UP_LINE.format(url=dep.url), flush=True)
            else:
                print(f"Virtual Mirror {', '.join(dep.roles)} up (containers {', '.join(dep.started)})", flush=True)
            dep.watch(stopping)
    except (ContainerError, subprocess.TimeoutExpired) as exc:
        print(f"container launch error: {exc}", file=sys.stderr, flush=True)
        code = 1
    finally:
        dep.stop()
        print(f"stopped and removed: {', '.join(dep.started) or 'nothing was started'}", flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
