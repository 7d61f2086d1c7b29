"""Faults: killed clients are cleaned up, missed heartbeats free a session, backend restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch

import gvirtus
from gvirtus.client import wait_until
from gvirtus.testing import BackendProcess
from tests.gvirtus.conftest import ROOT_DIR, make_convnet

SESSION_TIMEOUT_S = 1.5
CLEANUP_WAIT_S = 15.0

KILLED_CLIENT = textwrap.dedent("""
    import sys, numpy as np, torch
    import gvirtus
    torch.set_num_threads(1)
    dev = gvirtus.connect(sys.argv[1], token=sys.argv[2])
    net = torch.nn.Sequential(*[torch.nn.Conv2d(16 if i else 3, 16, 3, padding=1) for i in range(3)]).eval()
    mod = dev.register_module(net, [torch.zeros(1, 3, 192, 192)])
    held = dev.malloc(8 << 20)
    x = np.random.rand(1, 3, 192, 192).astype(np.float32)
    while True:
        print("LAUNCHING", flush=True)
        mod(x, keep_on_device=True)
""")


@pytest.fixture(scope="module")
def fault_backend() -> Iterator[BackendProcess]:
    with BackendProcess(session_timeout_s=SESSION_TIMEOUT_S, quota_mb=256) as b:
        yield b


def test_client_killed_mid_launch_frees_everything(fault_backend: BackendProcess) -> None:
    observer = gvirtus.connect(fault_backend.target, token=fault_backend.token)
    try:
        baseline = observer.stats()
        assert baseline["session_bytes"] == 0 and baseline["module_bytes"] == 0
        env = dict(os.environ, PYTHONPATH=str(ROOT_DIR), OMP_NUM_THREADS="1")
        proc = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, fault_backend.target, fault_backend.token or ""],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            launches = 0
            assert proc.stdout is not None
            while launches < 3:        # a few launches done, the next one in flight
                line = proc.stdout.readline()
                assert line, f"client died early: {proc.stderr.read().decode() if proc.stderr else ''}"
                launches += line.startswith(b"LAUNCHING")
            during = observer.stats()
            assert during["sessions"] == baseline["sessions"] + 1
            assert during["session_bytes"] >= 8 << 20 and during["module_bytes"] > 0
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        assert wait_until(lambda: observer.stats() == baseline, CLEANUP_WAIT_S), observer.stats()
    finally:
        observer.close()


def test_heartbeats_keep_an_idle_session_and_missed_ones_free_it(fault_backend: BackendProcess) -> None:
    dev = gvirtus.connect(fault_backend.target, token=fault_backend.token)
    try:
        h = dev.malloc(1024)
        dev.memcpy_htod(h, np.arange(256, dtype=np.float32))
        time.sleep(1.6 * SESSION_TIMEOUT_S)                  # idle, but the heartbeat thread runs
        np.testing.assert_array_equal(dev.memcpy_dtoh(h, np.float32, (256,)), np.arange(256, dtype=np.float32))
        dev._conn._stop.set()                                # heartbeats stop (a hung client)
        time.sleep(1.6 * SESSION_TIMEOUT_S + 0.5)
        with pytest.raises(gvirtus.SessionLost, match="no such session"):
            dev.memcpy_dtoh(h, np.float32, (256,))
        assert isinstance(gvirtus.SessionLost("x"), gvirtus.RemoteDeviceLost)
        dev.reconnect()
        dev.malloc(16)
    finally:
        dev.close()


def test_backend_restart_gives_typed_error_then_reconnect_works(fault_backend: BackendProcess) -> None:
    net = make_convnet(seed=2)
    x = torch.randn(1, 3, 32, 32)
    dev = gvirtus.connect(fault_backend.target, token=fault_backend.token, timeout_s=5.0)
    try:
        mod = dev.register_module(net, [x])
        with torch.no_grad():
            expected = net(x)
        torch.testing.assert_close(mod(x), expected)
        fault_backend.kill()                                  # crash: no goodbye to the client
        with pytest.raises(gvirtus.RemoteDeviceLost):
            mod(x)
        fault_backend.start()                                 # back on the same port, empty
        with pytest.raises(gvirtus.RemoteDeviceLost):         # SessionLost, or unreachable while reconnecting
            mod(x)
        dev.reconnect()
        torch.testing.assert_close(mod(x), expected)          # re-registered transparently
        assert mod.uploaded
    finally:
        dev.close()


def test_sigterm_stops_cleanly_and_frees_sessions(fault_backend: BackendProcess) -> None:
    """Runs last in this file: it stops the module's backend."""
    d = gvirtus.connect(fault_backend.target, token=fault_backend.token)
    d.malloc(1024)
    assert fault_backend.proc is not None
    fault_backend.proc.send_signal(signal.SIGTERM)
    assert fault_backend.proc.wait(10) == 0
    assert "stopped" in fault_backend.log_tail() and "backend stopping" in fault_backend.log_tail()
    with pytest.raises(gvirtus.RemoteDeviceLost):       # the client gets a typed error, no exit
        d.malloc(8)
    d.close()
