"""The three images and the LOCAL deployment as real containers (podman), with a real try-on.

scripts/build_images.sh builds the images (the base, the runtime and unchanged layers come from
the cache); `start_application.sh --containers` (through testing.deployment.LocalDeployment: free
ports, its own tokens, its own project name) starts viton, node2 and node1; then:
(a) the astronaut is dressed through the HTTPS API (node 1's exported certificate verified);
(b) both nodes' /health answer from this host, outside the containers;
(c) kill -9 of the VITON service process: the restart policy brings the container back, the
    launcher says so, and the next try-on succeeds;
(d) a clean stop leaves no container, network, listening port or staged secret behind.
Then the errors (missing image, missing secret, port in use, not healthy in time, a container
started without its config or with an unreadable secret) and the LOCAL compose file.
Skipped, with the reason, where podman cannot run (not installed, not root).
"""

from __future__ import annotations

import glob
import http.client
import io
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from node1.cli.http_client import WebClient
from testing.deployment import LocalDeployment, children, free_ports, write_config

ROOT = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, CONTAINERS_CONF=os.environ.get("CONTAINERS_CONF", str(ROOT / "deploy" / "containers.conf")),
           VM_CONTAINER_ENGINE="podman")
PROJECT = f"vmtest{os.getpid()}"
BUILD_TIMEOUT_S = 1800      # a fresh machine: debootstrap + torch layer; cached: ~10 s
REQUEST_TIMEOUT_S = 240     # the first try-on registers the models on the gvirtus backend
RECOVERY_TIMEOUT_S = 120
LAUNCH_TIMEOUT_S = 300


def _unusable() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (scripts/bootstrap.sh --dev installs it when run as root)"
    if os.geteuid() != 0:
        return "the container tests need root (rootful podman; the launcher stages secrets for uid 10001)"
    if shutil.which("runc") is None:
        return "runc is not installed (apt-get install runc): podman's default crun fails on these hosts"
    info = subprocess.run(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"], env=ENV,
                          capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        return f"podman info fails: {info.stderr.strip()[-300:]}"
    return None


REASON = _unusable()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["podman", *args], env=ENV, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed: {done.stderr[-1000:]}")
    return done


def leftovers(project: str) -> list[str]:
    """Containers (any state) and networks of `project` still present."""
    out = podman("ps", "-a", "--filter", f"label=io.virtual-mirror.project={project}", "--format", "{{.Names}}")
    nets = [n for n in podman("network", "ls", "--format", "{{.Name}}").stdout.split() if n == f"{project}-net"]
    return out.stdout.split() + nets


def cleanup(project: str) -> None:
    names = podman("ps", "-a", "--filter", f"label=io.virtual-mirror.project={project}", "--format",
                   "{{.Names}}").stdout.split()
    if names:
        podman("rm", "-f", "-t", "0", *names, check=False)
    podman("network", "rm", f"{project}-net", check=False)
    podman("volume", "rm", f"{project}-var", check=False)


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=95)
    return buf.getvalue()


@pytest.fixture(scope="module", autouse=True)
def _no_leftovers() -> Iterator[None]:
    """Whatever a failing test left of this run's deployments goes at the end of the module."""
    yield
    for project in (PROJECT, f"{PROJECT}e"):
        cleanup(project)


@pytest.fixture(scope="module")
def images() -> str:
    """Build (or reuse) the three images; returns the build script's size table."""
    done = subprocess.run([str(ROOT / "scripts" / "build_images.sh"), "--quiet"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert done.returncode == 0, f"scripts/build_images.sh failed:\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def deployment(images: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    overrides = {"limits": {"rate_limit_per_min": 100000, "request_timeout_s": REQUEST_TIMEOUT_S}}
    dep = LocalDeployment(tmp_path_factory.mktemp("containers"), overrides=overrides,
                          args=("--containers", "--project", PROJECT), env={"VM_CONTAINER_ENGINE": "podman"})
    try:
        yield dep.start(LAUNCH_TIMEOUT_S)
    finally:
        dep.stop()
        cleanup(PROJECT)


@pytest.fixture(scope="module")
def client(deployment: LocalDeployment) -> WebClient:
    return WebClient(deployment.url, cafile=deployment.cafile, timeout_s=REQUEST_TIMEOUT_S + 30)


def _assert_dressed(client: WebClient, astronaut: np.ndarray) -> None:
    red = next(g for g in client.garments() if "red" in g["name"].lower())
    out = client.tryon(_jpeg(astronaut), red["id"])
    # node 2 by its name on the private network; a cold gvirtus on a busy machine may hand the first
    # preprocessing to node 1's CPU (the same allowance as tests/e2e)
    assert out["transport"] == "tcp" and ("gvirtus:node2" in out["device"] or "fallback" in out["device"]), out
    result = np.asarray(Image.open(io.BytesIO(client.result(out["result_url"]))).convert("RGB"), np.float32)
    src = astronaut.astype(np.float32)
    face, chest = (slice(90, 170), slice(190, 260)), (slice(300, 400), slice(150, 300))
    assert result.shape == astronaut.shape
    assert np.abs(result[face] - src[face]).mean() < 6.0
    chest_rgb = result[chest].reshape(-1, 3).mean(axis=0)
    assert chest_rgb[0] > chest_rgb[1] + 40 and chest_rgb[0] > chest_rgb[2] + 40, chest_rgb


def _node2_health(dep: LocalDeployment) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", int(dep.config["node2"]["health_port"]), timeout=10)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_images_share_their_layers_and_carry_labels(images: str) -> None:
    meta = {}
    for role in ("node1", "node2", "viton"):
        out = podman("image", "inspect", f"virtual-mirror-{role}:0.1.0").stdout
        meta[role] = json.loads(out)[0]
    layers = [m["RootFS"]["Layers"] for m in meta.values()]
    assert layers[0] == layers[1] == layers[2]  # only the metadata differs
    for role, m in meta.items():
        cfg = m["Config"]
        assert cfg["User"] == "10001:10001"
        assert cfg["Entrypoint"][0] == "/usr/bin/tini"
        labels = cfg["Labels"]
        assert labels["org.opencontainers.image.title"] == f"virtual-mirror-{role}"
        assert labels["org.opencontainers.image.version"] == "0.1.0"
        assert len(labels["org.opencontainers.image.revision"].split("-")[0]) == 40
        assert "org.opencontainers.image.source" in labels
        assert m["Healthcheck"]["Test"][-1] == "/app/deploy/healthcheck.py"  # podman: beside Config
        assert f"VM_ROLE={role}" in cfg["Env"]
        assert not any(e.startswith(("VM_GVIRTUS_TOKEN", "VM_OPERATOR_TOKEN")) for e in cfg["Env"])
    listing = podman("run", "--rm", "--entrypoint", "sh", "virtual-mirror-node1:0.1.0", "-c",
                     "ls /app; ls /app/secrets; test -e /app/env_config.json && echo CONFIG; "
                     "test -e /run/secrets/pip_ca && echo BUILD-CA; ls /app/tests 2>/dev/null; id -u").stdout
    # nothing secret, no config, not the build's CA (a build-time secret mount), no test files
    assert "secrets" in listing and "gvirtus.token" not in listing and "CONFIG" not in listing
    assert "BUILD-CA" not in listing and "conftest.py" not in listing
    assert listing.split()[-1] == "10001"


def test_api_dresses_the_astronaut_in_containers(client: WebClient, astronaut: np.ndarray) -> None:
    _assert_dressed(client, astronaut)


def test_both_nodes_health_from_outside(deployment: LocalDeployment, client: WebClient) -> None:
    health = client.health()
    assert health["status"] == "ok" and health["node2_reachable"] is True, health
    status, body = _node2_health(deployment)
    assert status == 200 and body["status"] == "ok" and body["viton"]["reachable"] is True, body


def test_restart_policy_brings_viton_back(deployment: LocalDeployment, client: WebClient,
                                          astronaut: np.ndarray) -> None:
    name = f"{PROJECT}-viton"
    init_pid = int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout)
    (service_pid,) = children(init_pid)  # tini -> python -m viton.service
    assert "viton.service" in Path(f"/proc/{service_pid}/cmdline").read_text().replace("\0", " ")
    os.kill(service_pid, signal.SIGKILL)
    assert deployment.wait_for(rf"{name}: restarted by its restart policy", RECOVERY_TIMEOUT_S), deployment.log()
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while time.monotonic() < deadline:  # the gateway notices VITON again (its own heartbeat)
        if podman("exec", name, "python", "/app/deploy/healthcheck.py", check=False).returncode == 0 \
                and _node2_health(deployment)[0] == 200:
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"VITON did not come back within {RECOVERY_TIMEOUT_S} s:\n{podman('logs', name).stdout[-3000:]}")
    new_pid = int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout)
    assert new_pid != init_pid
    _assert_dressed(client, astronaut)


def test_clean_stop_leaves_nothing_behind(deployment: LocalDeployment) -> None:
    running = {f"{PROJECT}-node1", f"{PROJECT}-node2", f"{PROJECT}-viton", f"{PROJECT}-net"}
    assert set(leftovers(PROJECT)) == running
    assert glob.glob(f"/run/{PROJECT}-secrets-*"), "the staged secrets should exist while running"
    net = json.loads(podman("network", "inspect", f"{PROJECT}-net").stdout)[0]
    assert json.dumps(net).count('"mtu": "65520"') == 1  # the private network carries loopback-sized packets
    assert deployment.stop() == 0
    assert "stopped and removed" in deployment.log()
    assert leftovers(PROJECT) == []
    assert glob.glob(f"/run/{PROJECT}-secrets-*") == []
    for port in (deployment.config["node1"]["https_port"], deployment.config["node2"]["health_port"]):
        with socket.socket() as s:  # nothing listens there any more (podman's port forwarder is gone too)
            s.bind(("127.0.0.1", int(port)))


# --- errors: a clear message naming the problem, a non-zero exit, nothing left running -------------------

def launch(tmp_path: Path, *args: str, overrides: dict | None = None, timeout: float = LAUNCH_TIMEOUT_S
           ) -> tuple[int, str]:
    cfg = write_config(tmp_path, overrides)
    done = subprocess.run([str(ROOT / "start_application.sh"), "--containers", "--project", f"{PROJECT}e", *args],
                          cwd=ROOT, env=dict(ENV, VM_CONFIG=str(cfg)), capture_output=True, text=True,
                          timeout=timeout)
    return done.returncode, done.stdout + done.stderr


def test_missing_image_says_how_to_build(images: str, tmp_path: Path) -> None:
    code, out = launch(tmp_path, "--tag", "no-such-tag")
    assert code == 1
    assert "image virtual-mirror-viton:no-such-tag is not here: build the images with scripts/build_images.sh" in out
    assert leftovers(f"{PROJECT}e") == []


def test_missing_secret_is_named(images: str, tmp_path: Path) -> None:
    code, out = launch(tmp_path, overrides={"gvirtus": {"token_file": str(tmp_path / "gone.token")}})
    assert code == 1 and "gvirtus.token_file" in out and "gone.token" in out and "no such file" in out, out
    assert leftovers(f"{PROJECT}e") == []


def test_an_existing_container_of_that_name_is_left_alone(images: str, tmp_path: Path) -> None:
    name = f"{PROJECT}e-node2"
    podman("create", "--name", name, "virtual-mirror-node2:0.1.0")
    try:
        code, out = launch(tmp_path)
        assert code == 1 and f"a container named {name} exists already" in out, out
        assert podman("inspect", "--format", "{{.State.Status}}", name).stdout.strip() == "created"
    finally:
        podman("rm", "-f", name, check=False)
    assert leftovers(f"{PROJECT}e") == []


def test_port_in_use_is_named(images: str, tmp_path: Path) -> None:
    (port,) = free_ports(1)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        code, out = launch(tmp_path, overrides={"node1": {"https_port": port}})
    assert code == 1 and f"port {port} (node1.https_port) on 127.0.0.1 is not available" in out, out
    assert leftovers(f"{PROJECT}e") == []


def test_not_healthy_in_time_is_named_and_stopped(images: str, tmp_path: Path) -> None:
    code, out = launch(tmp_path, "--health-timeout", "0.1")
    # the first container not to pass its first probe is named (viton may already serve by then)
    assert code == 1 and re.search(rf"container {PROJECT}e-(viton|node2|node1) did not become healthy within 0 s",
                                   out), out
    assert leftovers(f"{PROJECT}e") == []


def test_container_without_its_config_says_what_to_mount(images: str) -> None:
    done = podman("run", "--rm", "virtual-mirror-node2:0.1.0", check=False, timeout=60)
    assert done.returncode == 2
    assert "no configuration at /etc/virtual-mirror/env_config.json: mount your env_config.json there" in done.stderr


def test_unreadable_secret_is_named(images: str, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "gvirtus.token").write_text("t")
    (secrets / "gvirtus.token").chmod(0o600)
    cfg = json.loads((ROOT / "env_config.json").read_text())
    cfg["node1"]["operator_token_file"] = None
    (tmp_path / "env_config.json").write_text(json.dumps(cfg))
    (tmp_path / "env_config.json").chmod(0o644)
    done = podman("run", "--rm", "-v", f"{tmp_path / 'env_config.json'}:/etc/virtual-mirror/env_config.json:ro",
                  "-v", f"{secrets}:/app/secrets:ro", "virtual-mirror-node2:0.1.0", check=False, timeout=60)
    assert done.returncode == 2
    assert "the folder mounted at /app/secrets is not readable by this container's user (uid 10001)" in done.stderr
    assert "chgrp -R 10001" in done.stderr


def test_local_compose_file_up_and_down(images: str, tmp_path: Path) -> None:
    if shutil.which("podman-compose") is None:
        pytest.skip("podman-compose is not installed (scripts/bootstrap.sh --dev installs it as root)")
    project = f"{PROJECT}c"
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    for name in ("gvirtus.token", "operator.token"):
        (secrets / name).write_text(f"compose-{name}")
    os.chown(secrets, 0, 10001)
    secrets.chmod(0o750)
    for f in secrets.iterdir():
        os.chown(f, 0, 10001)
        f.chmod(0o640)
    config = tmp_path / "env_config.json"
    shutil.copyfile(ROOT / "env_config.json", config)
    config.chmod(0o644)
    https, health = free_ports(2)
    env = dict(ENV, VM_ENV_CONFIG=str(config), VM_SECRETS_DIR=str(secrets), VM_HTTPS_PORT=str(https),
               VM_HEALTH_PORT=str(health), VM_BIND="127.0.0.1")
    compose = ["podman-compose", "-p", project, "-f", str(ROOT / "deploy" / "compose.local.yml")]
    try:
        up = subprocess.run([*compose, "up", "-d"], env=env, capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # loopback; the certificate is in the volume
        deadline, body = time.monotonic() + LAUNCH_TIMEOUT_S, {}
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", https, context=ctx, timeout=10)
                conn.request("GET", "/health")
                body = json.loads(conn.getresponse().read())
                conn.close()
                if body.get("node2_reachable"):
                    break
            except (OSError, http.client.HTTPException, ValueError):
                pass
            time.sleep(1)
        assert body.get("status") == "ok" and body.get("node2_reachable") is True, body
        conn2 = http.client.HTTPConnection("127.0.0.1", health, timeout=10)
        conn2.request("GET", "/health")
        assert json.loads(conn2.getresponse().read())["viton"]["reachable"] is True
        conn2.close()
    finally:
        down = subprocess.run([*compose, "down", "-v"], env=env, capture_output=True, text=True, timeout=300)
        podman("network", "rm", f"{project}_default", check=False)
    assert down.returncode == 0, down.stderr[-2000:]
    names = podman("ps", "-a", "--filter", f"label=io.podman.compose.project={project}", "--format", "{{.Names}}")
    assert names.stdout.split() == []


@pytest.mark.slow
def test_save_and_load_move_the_images_without_a_registry(images: str, tmp_path: Path) -> None:
    script = str(ROOT / "scripts" / "images_transfer.sh")
    archive = tmp_path / "vm-node2.tar.gz"
    env = dict(ENV, VM_GZIP_LEVEL="1")
    before = {r: podman("image", "inspect", "--format", "{{.Id}}", f"virtual-mirror-{r}:0.1.0").stdout.strip()
              for r in ("node2", "viton")}
    done = subprocess.run([script, "save", str(archive), "node2", "viton"], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "vm-node2.tar.gz.sha256").read_text().split()[1] == "vm-node2.tar.gz"
    podman("tag", "virtual-mirror-viton:0.1.0", "virtual-mirror-viton:before-load")
    podman("rmi", "virtual-mirror-viton:0.1.0")
    try:
        done = subprocess.run([script, "load", str(archive)], env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr
    finally:
        podman("tag", "virtual-mirror-viton:before-load", "virtual-mirror-viton:0.1.0", check=False)
        podman("rmi", "virtual-mirror-viton:before-load", check=False)
    after = {r: podman("image", "inspect", "--format", "{{.Id}}", f"virtual-mirror-{r}:0.1.0").stdout.strip()
             for r in ("node2", "viton")}
    assert after == before
    with archive.open("r+b") as f:  # a damaged copy is refused before anything is loaded
        f.seek(1000)
        f.write(b"\0" * 16)
    done = subprocess.run([script, "load", str(archive)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "does not match" in done.stderr
