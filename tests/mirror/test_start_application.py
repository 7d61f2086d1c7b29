"""start_application.sh for real: LOCAL comes up, prints the URL, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from testing.deployment import LocalDeployment, descendants
from tests.mirror.helpers import ROOT, make_config

START_TIMEOUT_S = 240
STOP_TIMEOUT_S = 40


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _start(config: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, VM_CONFIG=str(config), VM_SKIP_APT="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([str(ROOT / "start_application.sh"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_local_deployment_up_and_clean_stop(tmp_path: Path, stop_signal: int) -> None:
    dep = LocalDeployment(tmp_path)
    try:
        dep.start(START_TIMEOUT_S)
        assert dep.url.startswith("https://127.0.0.1:")
        log = dep.log()
        for component in ("gvirtus.backend", "viton.service", "node2.gateway", "node1.web"):
            assert re.search(rf"^\s+{re.escape(component)}\s+\S+", log, re.M), f"{component} not listed"
        assert dep.proc is not None
        family = set(descendants(dep.proc.pid))
        assert len(family) >= 4
        code = dep.stop(stop_signal, STOP_TIMEOUT_S)  # what a terminal's Ctrl-C does: signal the group
        deadline = time.monotonic() + 5
        while any(_alive(p) for p in family) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [p for p in family if _alive(p)]
        assert not left, f"processes left running after stop: {left}"
        assert code == 0
    finally:
        dep.stop(signal.SIGKILL)


def test_bad_config_exits_before_starting_anything(tmp_path: Path) -> None:
    config = make_config(tmp_path, node2={"gvirtus_port": 123456})
    proc = _start(config)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "node2.gvirtus_port = 123456 is invalid" in out
    assert "starting gvirtus.backend" not in out


def test_port_in_use_exits_non_zero(tmp_path: Path) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        config = make_config(tmp_path, node1={"https_port": port})
        proc = _start(config)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert f"port {port} (node1.https_port) on 127.0.0.1 is not available" in out


def test_distributed_needs_a_role(tmp_path: Path) -> None:
    config = make_config(tmp_path, DEPLOYMENT="DISTRIBUTED")
    proc = _start(config)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "--role node1|node2|viton" in out
