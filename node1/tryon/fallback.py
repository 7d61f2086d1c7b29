"""Device choice for node 1: the remote (gvirtus) device first, local CPU when it fails.

A circuit breaker keeps a dead backend from costing every request a timeout: after
``FAILURES_TO_OPEN`` consecutive failures the remote is not tried for ``OPEN_FOR_S`` seconds; then one
trial call decides (success closes it, failure opens it again). A lost backend is reconnected in the
background; until it is back, calls go to the local device at once. Every state switch is logged, and
every result says which device served it (``PoseResult.served_by``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from node1.pose.errors import DeviceUnavailable, PoseError

log = logging.getLogger("node1.tryon.fallback")

FAILURES_TO_OPEN = 3
OPEN_FOR_S = 30.0
RECONNECT_INITIAL_S = 0.25    # first background reconnect after a loss; doubles per failure
RECONNECT_MAX_S = 5.0         # ... up to this
# Why the local device served a call although a remote is configured:
FALLBACK_REASONS = ("connect_failed", "remote_failed", "reconnecting", "circuit_open")

# Deadline of each gvirtus call of node 1's session (connecting waits at most gvirtus's CONNECT_TIMEOUT_S).
# A new session's first launches lower and register the models on the backend: on a loaded 2-core
# host one took over 3 s (the old value), failed, closed the session (freeing the models) and the next
# session started over, so try-ons never returned to the remote device. A link cut costs the first
# request up to this long; later ones fall back at once while node1.tryon.fallback.FallbackDevice reconnects.
REMOTE_CALL_TIMEOUT_S = 15.0

T = TypeVar("T")


class CircuitBreaker:
    """closed (try the remote) -> open after N consecutive failures (skip it) -> half-open after T s (one trial)."""

    CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"

    def __init__(self, failures_to_open: int = FAILURES_TO_OPEN, open_for_s: float = OPEN_FOR_S,
                 clock: Callable[[], float] = time.monotonic, name: str = "remote") -> None:
        if failures_to_open < 1 or open_for_s < 0:
            raise ValueError(f"need failures_to_open >= 1 and open_for_s >= 0, got {failures_to_open}, {open_for_s}")
        self.failures_to_open = failures_to_open
        self.open_for_s = open_for_s
        self.clock = clock
        self.name = name
        self.state = self.CLOSED
        self.failures = 0
        self.opened_at = 0.0
        self._lock = threading.Lock()

    def _switch(self, state: str, why: str) -> None:
        if state != self.state:
            log.warning("circuit %s: %s -> %s (%s)", self.name, self.state, state, why)
            self.state = state

    def allow(self) -> bool:
        """Whether to try the remote now (moves open -> half-open once the wait is over)."""
        with self._lock:
            if self.state == self.OPEN and self.clock() - self.opened_at >= self.open_for_s:
                self._switch(self.HALF_OPEN, f"{self.open_for_s:g} s passed, trying once")
            return self.state != self.OPEN

    def trial(self) -> None:
        """Open -> half-open now (its node answers its health probe again): the next call decides."""
        with self._lock:
            if self.state == self.OPEN:
                self._switch(self.HALF_OPEN, "healthy again, trying once")

    def record_success(self) -> None:
        with self._lock:
            self.failures = 0
            self._switch(self.CLOSED, "call succeeded")

    def record_failure(self, error: BaseException | None = None) -> None:
        with self._lock:
            self.failures += 1
            if self.state == self.HALF_OPEN or self.failures >= self.failures_to_open:
                self.opened_at = self.clock()
                self._switch(self.OPEN, f"{self.failures} failure(s), last: {error!r}; "
                                        f"not trying for {self.open_for_s:g} s")


class FallbackDevice:
    """Run pipeline calls on the remote device when one is connected and the breaker allows, else locally.

    Args:
        connect_remote: returns a connected gvirtus ``RemoteDevice``.
        local: the local torch device used as fallback; None: no fallback, a call the remote cannot serve
            raises DeviceUnavailable (a pool member: the request fails over to another node 2 instead).
        breaker: the circuit breaker (default: FAILURES_TO_OPEN / OPEN_FOR_S).

    ``run(fn, image)`` calls ``fn(image, device=...)`` (e.g. ``estimate_pose``) and returns its result;
    errors about the photo itself (PoseError: no person, bad image) are not device failures and pass through.

    Connecting: the first call connects in the caller's thread. Once a session is lost (a call failed)
    or a connect failed, a background thread reconnects with capped backoff (RECONNECT_*_S) and every
    call meanwhile goes to the local device AT ONCE: no request waits for a restarting backend.
    After each call, ``last_served_by`` is "remote" or the local device, and ``last_fallback_reason``
    why the local device served (one of FALLBACK_REASONS), or None when it did not fall back (or no
    remote is configured). Callers that read them serialise their calls (node1.tryon.runner does).
    """

    def __init__(self, connect_remote: Callable[[], Any] | None, local: str | None = "cpu",
                 breaker: CircuitBreaker | None = None) -> None:
        self.connect_remote = connect_remote
        self.local = local
        self.breaker = breaker or CircuitBreaker()
        self._remote: Any = None
        self._lock = threading.Lock()
        self._tried_connect = False
        self._reconnector: threading.Thread | None = None
        self._closed = threading.Event()
        self.last_served_by = ""
        self.last_fallback_reason: str | None = None

    def remote_session(self) -> Any:
        """The connected remote device, or None; never connects (health reads it)."""
        return self._remote

    @property
    def reconnecting(self) -> bool:
        """A background reconnect is under way (the remote is known to be down)."""
        t = self._reconnector
        return t is not None and t.is_alive()

    def _session(self) -> tuple[Any, str | None]:
        """(the connected remote, None), or (None, why not) without waiting for a lost backend."""
        with self._lock:
            if self._remote is not None:
                return self._remote, None
            # Without a local fallback (a pool member) nothing is gained by waiting: connect now.
            if (self._tried_connect and self.local is not None) or self.connect_remote is None:
                self._start_reconnect_locked()
                return None, "reconnecting"
            self._tried_connect = True
            try:
                self._remote = self.connect_remote()
            except Exception as exc:  # noqa: BLE001 - any connect failure means: fall back
                log.warning("cannot connect the remote device (%s: %s); serving on local %s while reconnecting",
                            type(exc).__name__, exc, self.local)
                self.breaker.record_failure(exc)
                self._start_reconnect_locked()
                return None, "connect_failed"
            return self._remote, None

    def _start_reconnect_locked(self) -> None:
        if self.connect_remote is None or self._closed.is_set() or self.local is None:
            return
        if self._reconnector is None or not self._reconnector.is_alive():
            self._reconnector = threading.Thread(target=self._reconnect_loop, name="remote-reconnect", daemon=True)
            self._reconnector.start()

    def _reconnect_loop(self) -> None:
        if self.connect_remote is None:
            return
        wait_s = RECONNECT_INITIAL_S
        while not self._closed.wait(wait_s):
            try:
                dev = self.connect_remote()
            except Exception as exc:  # noqa: BLE001
                log.info("remote device still unreachable (%s: %s); next try in %.1f s", type(exc).__name__, exc,
                         min(wait_s * 2, RECONNECT_MAX_S))
                wait_s = min(wait_s * 2, RECONNECT_MAX_S)
                continue
            with self._lock:
                if self._closed.is_set():
                    break
                self._remote = dev
            self.breaker.record_success()
            log.warning("remote device reconnected; calls go to it again")
            return
        if self._closed.is_set() and self._remote is not None:
            self._drop_remote()

    def _drop_remote(self) -> None:
        with self._lock:
            dev, self._remote = self._remote, None
            self._start_reconnect_locked()
        if dev is not None:
            try:
                dev.close()
            except Exception:  # noqa: BLE001 - closing a broken session is best effort
                log.debug("closing the remote device failed", exc_info=True)

    def run(self, fn: Callable[..., T], image: Any) -> T:
        reason: str | None = None
        if self.connect_remote is not None:
            if not self.breaker.allow():
                reason = "circuit_open"
            else:
                dev, reason = self._session()
                if dev is not None:
                    self.last_served_by, self.last_fallback_reason = "remote", None
                    try:
                        out = fn(image, device=dev)
                    except PoseError:
                        self.breaker.record_success()  # the device worked; the photo was the problem
                        raise
                    except Exception as exc:  # noqa: BLE001 - any device/transport failure means: fall back
                        reason = "remote_failed"
                        self.breaker.record_failure(exc)
                        self._drop_remote()
                        log.warning("remote device failed (%s: %s); serving on local %s", type(exc).__name__, exc,
                                    self.local)
                    else:
                        self.breaker.record_success()
                        log.info("%s served by the remote device", getattr(fn, "__name__", "call"))
                        return out
        if self.local is None:
            raise DeviceUnavailable(f"the remote device cannot serve the call ({reason}); no local fallback here")
        self.last_served_by, self.last_fallback_reason = self.local, reason   # also when the photo is refused
        try:
            out = fn(image, device=self.local)
        except PoseError:
            raise
        except Exception as exc:
            raise DeviceUnavailable(f"the local fallback device {self.local!r} failed too: {exc}") from exc
        log.info("%s served by local %s", getattr(fn, "__name__", "call"), self.local)
        return out

    def reset(self) -> None:
        """Close the current remote session, if any (its backend restarted); the next call connects again
        (with a local fallback: the background reconnect does)."""
        self._drop_remote()

    def close(self) -> None:
        self._closed.set()
        self._drop_remote()


def remote_connector(cfg: Any) -> Callable[[], Any]:
    """A connect function for FallbackDevice: a gvirtus session to cfg's node2 (REMOTE_CALL_TIMEOUT_S per call)."""

    def connect() -> Any:
        import gvirtus

        return gvirtus.connect_from_config(cfg, client_name="node1.tryon", timeout_s=REMOTE_CALL_TIMEOUT_S)

    return connect
