"""Device choice: circuit breaker transitions (logged) and fallback from an unreachable gvirtus backend."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from node1.pose import NoPersonDetected, estimate_pose
from node1.tryon.fallback import CircuitBreaker, FallbackDevice


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_n_failures_and_retries_after_t(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    cb = CircuitBreaker(failures_to_open=2, open_for_s=30.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="node1.tryon.fallback"):
        assert cb.allow()
        cb.record_failure(OSError("refused"))
        assert cb.allow() and cb.state == "closed"
        cb.record_failure(OSError("refused"))
        assert cb.state == "open" and not cb.allow()
        clock.now += 29.9
        assert not cb.allow()
        clock.now += 0.2
        assert cb.allow() and cb.state == "half_open"
        cb.record_failure(OSError("still down"))  # the one trial failed: open again at once
        assert cb.state == "open" and not cb.allow()
        clock.now += 30
        assert cb.allow()
        cb.record_success()
        assert cb.state == "closed" and cb.failures == 0
    switches = [r.getMessage() for r in caplog.records if "circuit" in r.getMessage()]
    assert len(switches) == 5, switches  # closed->open, open->half, half->open, open->half, half->closed
    assert "closed -> open" in switches[0] and "half_open -> closed" in switches[-1]


def test_breaker_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="failures_to_open"):
        CircuitBreaker(failures_to_open=0)


def test_unreachable_backend_falls_back_at_once_while_reconnecting(astronaut: np.ndarray, free_port: int) -> None:
    import gvirtus

    callers: list[str] = []

    def connect() -> object:
        callers.append(threading.current_thread().name)
        return gvirtus.connect(f"127.0.0.1:{free_port}", token="x", timeout_s=0.5)  # nothing listens there

    chooser = FallbackDevice(connect, local="cpu")
    try:
        reasons = []
        for _ in range(3):
            assert chooser.run(estimate_pose, astronaut).served_by == "cpu"
            reasons.append(chooser.last_fallback_reason)
        assert reasons == ["connect_failed", "reconnecting", "reconnecting"]
        # only the first call tried to connect in the caller's thread; the others went local at once
        assert callers.count(threading.current_thread().name) == 1
        assert chooser.reconnecting and chooser.last_served_by == "cpu"
    finally:
        chooser.close()
    if chooser._reconnector is not None:
        chooser._reconnector.join(10)
    assert not chooser.reconnecting          # close() stops the background reconnect


def _where(_image: object, device: object = "cpu") -> str:
    """A device call: a gvirtus round trip on a remote device, nothing on the local one."""
    if device == "cpu":
        return "cpu"
    device.properties()  # type: ignore[attr-defined]
    return "remote"


def test_backend_restart_falls_back_at_once_then_returns_to_remote() -> None:
    """The defect found by hand: after a gvirtus backend restart, requests other than the first
    waited for it (up to 5.6 s). Now: the failing call falls back, later calls go local without
    connecting, and the background reconnect brings the remote back once the backend is up."""
    import gvirtus
    from gvirtus.client import wait_until
    from gvirtus.testing import BackendProcess

    with BackendProcess(torch_threads=1) as backend:
        callers: list[str] = []

        def connect() -> object:
            callers.append(threading.current_thread().name)
            return gvirtus.connect(backend.target, token=backend.token, timeout_s=2.0)

        chooser = FallbackDevice(connect, local="cpu")
        try:
            assert chooser.run(_where, None) == "remote" and chooser.last_fallback_reason is None
            backend.kill()
            assert chooser.run(_where, None) == "cpu" and chooser.last_fallback_reason == "remote_failed"
            for _ in range(3):                # the backend is still down: local, without waiting for it
                assert chooser.run(_where, None) == "cpu" and chooser.last_fallback_reason == "reconnecting"
            assert callers.count(threading.current_thread().name) == 1     # only the very first connect
            backend.start()
            assert wait_until(lambda: chooser.remote_session() is not None, 30.0), backend.log_tail()
            assert chooser.run(_where, None) == "remote" and chooser.last_served_by == "remote"
        finally:
            chooser.close()


def test_photo_errors_are_not_device_failures() -> None:
    chooser = FallbackDevice(None, local="cpu")
    with pytest.raises(NoPersonDetected):
        chooser.run(estimate_pose, np.zeros((256, 256, 3), np.uint8))
    assert chooser.breaker.failures == 0
    # no remote configured: the CPU serving is not a fallback, even for a refused photo
    assert chooser.last_served_by == "cpu" and chooser.last_fallback_reason is None
