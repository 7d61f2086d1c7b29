"""The supervisor's lifecycle with real child processes: ready, crash, restart, port in use, stop."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from mirror import LaunchError, load_config
from mirror.launch import ChildSpec, Supervisor, check_port_free, role_specs
from tests.mirror.helpers import free_ports, make_config

CHILD = "tests.mirror.children.serve_child"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not running anything.
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"


def _spec(name: str, port: int) -> ChildSpec:
    return ChildSpec(name, CHILD, "node2", [(f"test.{name}", "127.0.0.1", port)])


@pytest.fixture
def cfg(tmp_path: Path):
    return load_config(make_config(tmp_path), env={})


def test_role_specs_follow_deployment(cfg) -> None:
    everything = ["gvirtus.backend", "viton.service", "node2.gateway", "node1.web"]
    assert [s.name for s in role_specs(cfg, "all")] == everything
    assert [s.name for s in role_specs(cfg, "node2")] == ["gvirtus.backend", "viton.service", "node2.gateway"]
    assert [s.name for s in role_specs(cfg, "node1")] == ["node1.web"]
    with pytest.raises(LaunchError, match="unknown role 'gpu'"):
        role_specs(cfg, "gpu")


def test_port_in_use_is_named(cfg) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(LaunchError, match=rf"port {port} \(node1.https_port\) on 127.0.0.1 is not available"):
            check_port_free("node1.https_port", "127.0.0.1", port)
        sup = Supervisor(cfg, "all", specs=[_spec("a", port)])
        with pytest.raises(LaunchError, match="is not available"):
            sup.start_all()
        assert all(c.proc is None for c in sup.children)  # nothing was started


def test_start_ready_and_stop_leaves_nothing(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    p1, p2 = free_ports(2)
    monkeypatch.setenv("TEST_PORT", str(p1))
    sup = Supervisor(cfg, "all", specs=[_spec("a", p1)])
    sup.start_all()
    info = sup.children[0].ready_info
    assert info and info["listen"] == f"127.0.0.1:{p1}"
    pids = [info["pid"], info["grandchild"]]
    assert all(_alive(p) for p in pids)
    sup.stop_all()
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids), "a child or grandchild survived stop_all"


def test_child_dying_during_start_is_reported(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    (port,) = free_ports(1)
    monkeypatch.setenv("TEST_PORT", str(port))
    monkeypatch.setenv("TEST_CRASH_BEFORE_READY", "1")
    sup = Supervisor(cfg, "all", specs=[_spec("a", port)])
    with pytest.raises(LaunchError) as err:
        sup.start_all()
    sup.stop_all()
    msg = str(err.value)
    assert "a exited with status 3 during start" in msg
    assert "TEST_CRASH_BEFORE_READY is set" in msg  # its last output is shown


def test_crashed_child_is_restarted(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    (port,) = free_ports(1)
    monkeypatch.setenv("TEST_PORT", str(port))
    monkeypatch.setenv("TEST_CRASH_AFTER_S", "0.3")
    sup = Supervisor(cfg, "all", specs=[_spec("a", port)])
    sup.start_all()
    first_pid = sup.children[0].ready_info["pid"]
    watcher = threading.Thread(target=sup.watch, daemon=True)
    watcher.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        child = sup.children[0]
        if child.restarts >= 1 and child.ready_info and child.ready_info["pid"] != first_pid:
            break
        time.sleep(0.05)
    sup.stop_all()
    watcher.join(timeout=5)
    assert sup.children[0].restarts >= 1
    assert sup.children[0].ready_info["pid"] != first_pid  # the restarted one reported ready again


def test_no_restart_mode_fails(cfg, monkeypatch: pytest.MonkeyPatch) -> None:
    (port,) = free_ports(1)
    monkeypatch.setenv("TEST_PORT", str(port))
    monkeypatch.setenv("TEST_CRASH_AFTER_S", "0.2")
    sup = Supervisor(cfg, "all", restart=False, specs=[_spec("a", port)])
    sup.start_all()
    sup.watch()  # returns once the child exits
    sup.stop_all()
    assert sup.failed


def test_threads_per_child_never_oversubscribes() -> None:
    from mirror.launch import threads_per_child

    assert threads_per_child(4, cpus=2) == 1
    assert threads_per_child(3, cpus=16) == 5
    assert threads_per_child(1, cpus=8) == 8
    assert threads_per_child(0, cpus=2) == 2
