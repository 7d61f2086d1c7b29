"""Node 1's pool of node 2s: membership, health, load, breakers and the choice of one member per request.

Members come from the config list (`pool.members`), from DNS (node1.tryon.discovery, re-resolved) or
from registration (POST /api/nodes/register, kept by heartbeats). Each member owns its node-1 side:
a gvirtus session (FallbackDevice without a local fallback: a dead member fails over, it does not
drag the request onto node 1's CPU) and a transport channel to its gateway, both opened once and
reused. A poll thread per member reads its /health (device, free GPU memory, VITON up, in-flight,
gvirtus sessions) every `pool.health_interval_s`.

A member is eligible when its last probe said "ok", it is not ejected and its breaker allows. A
refused connection or a failed request ejects it at once; PROBE_FAILURES_TO_EJECT timed-out probes
in a row do too; the next "ok" probe brings it back (an open breaker goes half-open: one trial).

Routing (`choose`): least outstanding work weighted by free GPU memory,
    score = (in_flight + 1) / (free_memory / max free_memory among the eligible),
weights rounded to WEIGHT_STEP, ties broken round-robin; a registered member at its `max_jobs` is
passed over while others are free.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from node1.tryon.errors import Node2Unavailable
from node1.tryon.fallback import CircuitBreaker

log = logging.getLogger("node1.tryon.pool")

# One /health GET. node 2 answers from caches, but refreshing them (every 5 s) asks its gvirtus backend,
# which took over 1.5 s on a loaded 2-core host; a killed member is refused at once anyway.
HEALTH_PROBE_TIMEOUT_S = 3.0
PROBE_FAILURES_TO_EJECT = 2       # timed-out probes in a row; a refused connection ejects at once
WEIGHT_STEP = 0.05                # free-memory weights are rounded to this (noise in the reports is no preference)
MEMBER_FAILURES_TO_OPEN = 3       # failed requests in a row open a member's breaker
MEMBER_OPEN_FOR_S = 10.0
SOURCES = ("config", "dns", "registered")
RECENT_RETRIES = 256              # retried requests kept for GET /api/nodes (their latency)
MIB = 2**20


class NoMemberAvailable(Node2Unavailable):
    """No node 2 of the pool can take the request now; the message names why, member by member."""


@dataclass(frozen=True)
class MemberAddress:
    """How node 1 reaches one node 2."""

    host: str
    gvirtus_port: int
    gateway_port: int
    health_port: int
    gvirtus_data_port: int = 0

    @classmethod
    def from_mapping(cls, m: Any) -> MemberAddress:
        return cls(str(m["host"]), int(m["gvirtus_port"]), int(m["gateway_port"]), int(m["health_port"]),
                   int(m.get("gvirtus_data_port") or 0))

    def as_node2(self) -> dict[str, Any]:
        """The `node2` config section of this address (what gvirtus and the transport read)."""
        return {"host": self.host, "gvirtus_port": self.gvirtus_port, "gvirtus_data_port": self.gvirtus_data_port,
                "gateway_port": self.gateway_port, "health_port": self.health_port}


@dataclass
class Member:
    """One node 2 and node 1's state about it. `conn` is what the builder opened (a per-member runner,
    its device and link); the pool never looks inside, it only closes it."""

    name: str
    source: str
    address: MemberAddress
    conn: Any = None
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    healthy: bool = False
    ejected: bool = False
    in_flight: int = 0
    probe_failures: int = 0
    health: dict[str, Any] = field(default_factory=dict)
    last_error: str | None = None
    last_probe_at: float = 0.0
    ejected_at: float | None = None
    routed: int = 0
    failures: int = 0
    ejections: int = 0
    info: dict[str, Any] = field(default_factory=dict)     # what a registration announced
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def up(self) -> bool:
        """Its last probe said "ok" and it is not ejected (the breaker is asked separately)."""
        return self.healthy and not self.ejected

    def free_memory_mb(self) -> float | None:
        """Free device memory its /health reports; None when unknown or the device is a CPU (whose
        "memory" is the host's RAM, shared with everything else there: no reason to prefer a member)."""
        gpu = self.health.get("gpu") or {}
        if gpu.get("device_type") == "cpu":
            return None
        total, used = gpu.get("memory_total_mb"), gpu.get("memory_used_mb")
        if isinstance(total, int | float) and isinstance(used, int | float) and total > 0:
            return max(float(total) - float(used), 0.0)
        return None

    def view(self) -> dict[str, Any]:
        """The operator's view (GET /api/nodes)."""
        gpu = self.health.get("gpu") or {}
        return {"name": self.name, "source": self.source, **self.address.as_node2(),
                "healthy": self.healthy, "ejected": self.ejected,
                "eligible": self.up and self.breaker.state != CircuitBreaker.OPEN,
                "breaker": self.breaker.state, "in_flight": self.in_flight, "routed": self.routed,
                "failures": self.failures, "ejections": self.ejections, "last_error": self.last_error,
                "status": self.health.get("status"), "viton_in_flight": self.health.get("viton_in_flight"),
                "gvirtus_sessions": (self.health.get("gvirtus") or {}).get("sessions"),
                "gpu": {k: gpu.get(k) for k in ("name", "device_type", "memory_used_mb", "memory_total_mb")} or None,
                "registered": dict(self.info) or None}


ConnBuilder = Callable[[Member], Any]


class Pool:
    """The members and the routing; thread-safe.

    Args:
        build_conn: opens a member's node-1 side (called when it joins); its result's `close()` is
            called when it leaves.
        health_interval_s: how often each member's /health is polled.
        probe: GET of a member's health document (default: HTTP); tests may pass another.
    """

    def __init__(self, build_conn: ConnBuilder, health_interval_s: float = 1.0,
                 probe: Callable[[MemberAddress, float], dict[str, Any]] | None = None) -> None:
        self._build_conn = build_conn
        self.health_interval_s = health_interval_s
        self._probe = probe or probe_health
        self._lock = threading.Lock()
        self._members: dict[str, Member] = {}
        self._turn = 0
        self.retries = 0
        # the latest retried requests that succeeded: what, first member(s), member that served, total ms
        self.recent_retries: collections.deque[dict[str, Any]] = collections.deque(maxlen=RECENT_RETRIES)
        self.registrations_refused = 0
        self.removed_total = 0
        self._closed = False

    # ------------------------------------------------------------------ membership
    def add(self, name: str, source: str, address: MemberAddress, info: dict[str, Any] | None = None) -> Member:
        """Add a member (or update a registered one's address and info); starts its health polling."""
        if source not in SOURCES:
            raise ValueError(f"unknown member source {source!r}; use one of {', '.join(SOURCES)}")
        with self._lock:
            old = self._members.get(name)
            if old is not None and old.address == address:
                old.info = dict(info or old.info)
                return old
        if old is not None:
            self.remove(name, why="its address changed")
        member = Member(name, source, address, info=dict(info or {}),
                        breaker=CircuitBreaker(MEMBER_FAILURES_TO_OPEN, MEMBER_OPEN_FOR_S, name=f"node2 {name}"))
        member.conn = self._build_conn(member)
        with self._lock:
            self._members[name] = member
        log.info("pool: %s joined (%s, %s:%d)", name, source, address.host, address.gateway_port)
        self.probe_now(member)
        threading.Thread(target=self._poll_loop, args=(member,), name=f"pool-health-{name}", daemon=True).start()
        return member

    def remove(self, name: str, why: str) -> bool:
        with self._lock:
            member = self._members.pop(name, None)
            if member is not None:
                self.removed_total += 1
        if member is None:
            return False
        member.stop.set()
        log.warning("pool: %s left (%s)", name, why)
        close = getattr(member.conn, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # noqa: BLE001 - closing a dead member's channels is best effort
                log.debug("closing %s failed", name, exc_info=True)
        return True

    def members(self) -> list[Member]:
        with self._lock:
            return list(self._members.values())

    def get(self, name: str) -> Member | None:
        with self._lock:
            return self._members.get(name)

    def close(self) -> None:
        self._closed = True
        for m in self.members():
            self.remove(m.name, why="node 1 stops")

    # ------------------------------------------------------------------ health
    def _poll_loop(self, member: Member) -> None:
        while not member.stop.wait(self.health_interval_s):
            self.probe_now(member)

    def probe_now(self, member: Member) -> None:
        """One health probe of `member`, applied to its state."""
        try:
            doc = self._probe(member.address, HEALTH_PROBE_TIMEOUT_S)
        except ProbeFailed as exc:
            self._probe_failed(member, exc)
            return
        with self._lock:
            member.health, member.last_probe_at, member.probe_failures = doc, time.monotonic(), 0
            ok = doc.get("status") == "ok" and (doc.get("gvirtus") or {}).get("reachable", True) is not False
            if not ok:
                member.last_error = f"node 2 reports status {doc.get('status')!r}"
                self._eject_locked(member, member.last_error)
                member.healthy = False
                return
            rejoin = member.ejected
            if not rejoin:
                member.healthy = True
                return
        # Sessions opened before it went down are stale (a restarted backend forgot them): drop them
        # before the member takes requests again; the next request opens fresh ones.
        reset = getattr(member.conn, "reset", None)
        if reset is not None:
            try:
                reset()
            except Exception:  # noqa: BLE001 - dropping a dead session is best effort
                log.debug("resetting %s's sessions failed", member.name, exc_info=True)
        with self._lock:
            member.healthy, member.ejected = True, False
            log.warning("pool: %s is healthy again and rejoins (out %.1f s)", member.name,
                        time.monotonic() - (member.ejected_at or time.monotonic()))
            member.breaker.trial()

    def _probe_failed(self, member: Member, exc: ProbeFailed) -> None:
        with self._lock:
            member.probe_failures += 1
            member.last_error = f"health probe: {exc}"
            if exc.definite or member.probe_failures >= PROBE_FAILURES_TO_EJECT:
                member.healthy = False
                self._eject_locked(member, member.last_error)

    def _eject_locked(self, member: Member, why: str) -> None:
        if not member.ejected:
            member.ejected, member.ejected_at = True, time.monotonic()
            member.ejections += 1
            log.warning("pool: %s ejected (%s)", member.name, why)

    # ------------------------------------------------------------------ routing
    def choose(self, exclude: set[str] | frozenset[str] = frozenset()) -> Member:
        """The member for the next request (see the module docstring).

        Raises:
            NoMemberAvailable: no eligible member; the message names each member's reason.
        """
        with self._lock:
            members = list(self._members.values())
            candidates = [m for m in members if m.name not in exclude and m.up and m.breaker.allow()]
            if not candidates:
                raise NoMemberAvailable(self._why_none(members, exclude))
            free = {m.name: m.free_memory_mb() for m in candidates}
            known = [f for f in free.values() if f is not None and f > 0]
            top = max(known) if known else None
            not_full = [m for m in candidates if m.in_flight < int(m.info.get("max_jobs") or 1 << 30)]
            pool = not_full or candidates
            self._turn += 1
            best, best_score = pool[0], float("inf")
            for i in range(len(pool)):
                m = pool[(self._turn + i) % len(pool)]
                f = free[m.name]
                weight = (f / top) if (top and f is not None and f > 0) else 1.0
                # in WEIGHT_STEP steps: members with about the same free memory tie and take turns
                weight = max(round(weight / WEIGHT_STEP) * WEIGHT_STEP, WEIGHT_STEP)
                score = (m.in_flight + 1) / weight
                if score < best_score:
                    best, best_score = m, score
            return best

    @staticmethod
    def _why_none(members: list[Member], exclude: set[str] | frozenset[str]) -> str:
        if not members:
            return ("no node 2 in the pool: list them in pool.members, set pool.dns, or register node 2s "
                    "(python -m node2.gateway --register URL)")
        reasons = []
        for m in members:
            if m.name in exclude:
                reasons.append(f"{m.name}: already failed this request ({m.last_error})")
            elif m.breaker.state == CircuitBreaker.OPEN:
                reasons.append(f"{m.name}: breaker open after {m.breaker.failures} failures ({m.last_error})")
            else:
                state = "ejected" if m.ejected else "not healthy"
                reasons.append(f"{m.name}: {state} ({m.last_error or 'no probe yet'})")
        return "no node 2 can take the try-on now: " + "; ".join(reasons)

    @contextmanager
    def track(self, member: Member) -> Iterator[None]:
        """Count one request routed to `member` while it runs."""
        with self._lock:
            member.in_flight += 1
            member.routed += 1
        try:
            yield
        finally:
            with self._lock:
                member.in_flight -= 1

    def record_success(self, member: Member) -> None:
        member.breaker.record_success()

    def record_failure(self, member: Member, error: BaseException, eject: bool, breaker: bool = True) -> None:
        """A request failed on `member`; `eject` when the member itself is in doubt (transport, device);
        `breaker`: count it on the member's breaker (False when its device already did)."""
        if breaker:
            member.breaker.record_failure(error)
        with self._lock:
            member.failures += 1
            member.last_error = f"{type(error).__name__}: {error}"
            if eject:
                member.healthy = False
                self._eject_locked(member, member.last_error)

    def count_refused_registration(self) -> None:
        with self._lock:
            self.registrations_refused += 1

    def record_retry(self, what: str, failed_on: list[str], served_by: str, total_ms: float) -> None:
        with self._lock:
            self.recent_retries.append({"what": what, "failed_on": failed_on, "served_by": served_by,
                                        "total_ms": round(total_ms, 1), "at": time.time()})

    def count_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [m.view() for m in sorted(self._members.values(), key=lambda m: m.name)]


class ProbeFailed(Exception):  # noqa: N818 (names say what went wrong)
    """A health probe got no health document. `definite`: the member is surely down (refused)."""

    def __init__(self, message: str, definite: bool) -> None:
        super().__init__(message)
        self.definite = definite


def probe_health(address: MemberAddress, timeout_s: float) -> dict[str, Any]:
    """GET http://host:health_port/health -> the JSON document (also when it answers 503: degraded).

    Raises:
        ProbeFailed: no document (refused: definite; timed out or garbled: not).
    """
    host = f"[{address.host}]" if ":" in address.host else address.host
    url = f"http://{host}:{address.health_port}/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 (http to our own node 2)
            body = resp.read()
    except urllib.error.HTTPError as exc:
        body = exc.read()
    except (ConnectionRefusedError, ConnectionResetError) as exc:
        raise ProbeFailed(f"{url}: {exc.strerror or exc}", definite=True) from exc
    except urllib.error.URLError as exc:
        refused = isinstance(exc.reason, ConnectionRefusedError | ConnectionResetError)
        raise ProbeFailed(f"{url}: {exc.reason}", definite=refused) from exc
    except OSError as exc:
        raise ProbeFailed(f"{url}: {type(exc).__name__}: {exc}", definite=False) from exc
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise ProbeFailed(f"{url}: not JSON ({exc})", definite=False) from exc
    if not isinstance(doc, dict):
        raise ProbeFailed(f"{url}: not a JSON object", definite=False)
    return doc


__all__ = ["Member", "MemberAddress", "NoMemberAvailable", "Pool", "ProbeFailed", "probe_health"]
