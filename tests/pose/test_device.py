"""Device choice: circuit breaker transitions (logged) and fallback from an unreachable gvirtus backend."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from node1.pose import CircuitBreaker, FallbackDevice, NoPersonDetected, estimate_pose


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_n_failures_and_retries_after_t(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    cb = CircuitBreaker(failures_to_open=2, open_for_s=30.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="node1.pose.device"):
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


def test_unreachable_backend_falls_back_to_cpu(astronaut: np.ndarray, free_port: int) -> None:
    import gvirtus

    attempts = []

    def connect() -> object:
        attempts.append(1)
        return gvirtus.connect(f"127.0.0.1:{free_port}", token="x", timeout_s=0.5)  # nothing listens there

    clock = FakeClock()
    chooser = FallbackDevice(connect, local="cpu", breaker=CircuitBreaker(2, 60.0, clock=clock))
    for _ in range(3):
        result = chooser.run(estimate_pose, astronaut)
        assert result.served_by == "cpu"
    assert len(attempts) == 2  # third call skipped the remote: the breaker is open
    assert chooser.breaker.state == "open"


def test_photo_errors_are_not_device_failures() -> None:
    chooser = FallbackDevice(None, local="cpu")
    with pytest.raises(NoPersonDetected):
        chooser.run(estimate_pose, np.zeros((256, 256, 3), np.uint8))
    assert chooser.breaker.failures == 0
