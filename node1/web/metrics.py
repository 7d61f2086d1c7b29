"""Prometheus metrics of the web app (prometheus_client, one registry per app).

One gunicorn worker process serves the app (with threads), so a per-process registry is the
whole truth and no multiprocess mode is needed (see docs/web.md for why one process).

    tryon_requests_total{outcome}       outcome = "ok" or the error code
    tryon_errors_total{kind}            kind = the error code
    tryon_duration_seconds{stage}       decode, pose, parsing, transfer, tryon, encode, total
    gvirtus_calls_total                 remote CUDA calls made by try-ons' preprocessing (RPCs and
                                        data-channel requests, counted by gvirtus.client where they
                                        are made; read from the runner's counters at scrape time)
    preprocess_fallbacks_total{reason}  try-ons whose preprocessing the local CPU served although a
                                        remote device is configured, by reason (node1.tryon.fallback)
    transport_bytes_total               bytes moved over the node 1 <-> node 2 transport
    tryon_active_jobs                   try-ons queued or running now
    live_sessions                       live mirror (WebRTC) sessions open now
    live_frames_in_total                video frames received from live sessions
    live_frames_processed_total{status} frames through the per-frame path: dressed, no_person, error
    live_frames_dropped_total           frames replaced by a newer one before they were processed
    live_frame_duration_seconds{stage}  per frame: pose, parsing, tryon (node 2's leg), total
                                        (processing), latency (received -> sent back)
    pool_* (with a pool of node 2s, node1.tryon.pool; labels member, source):
    pool_members                        members now
    pool_member_up{member,source}       1 when it takes requests (healthy, not ejected, breaker not open)
    pool_requests_routed_total{member}  requests (tries) sent to it
    pool_request_failures_total{member} tries that failed on it (transport, device, timeout)
    pool_ejections_total{member}        times it was ejected
    pool_in_flight{member}              requests on it now
    pool_breaker_open{member}           1 while its breaker is open
    pool_member_gpu_free_bytes{member}  free device memory its /health reports
    pool_retries_total                  requests retried on another member
    pool_registrations_refused_total    registrations / heartbeats refused (wrong or missing token)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from node1.tryon import STAGES

# Seconds; from a fast local try-on (tens of ms) to the request timeout.
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

LIVE_BUCKETS_S = (0.005, 0.01, 0.02, 0.033, 0.05, 0.067, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class RunnerCountersCollector:
    """gvirtus_calls_total and preprocess_fallbacks_total from the runner's own counters (a runner
    without them, e.g. a test double, reports 0 calls and no fallbacks)."""

    def __init__(self, counters: Any) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        snap: dict[str, Any] = self.counters.snapshot() if self.counters is not None else {}
        yield CounterMetricFamily("gvirtus_calls", "Remote CUDA (gvirtus) calls made by try-ons' preprocessing",
                                  value=int(snap.get("gvirtus_calls", 0)))
        fallbacks = CounterMetricFamily("preprocess_fallbacks", "Try-ons preprocessed on the local CPU although a "
                                        "remote device is configured, by reason", labels=["reason"])
        for reason, n in sorted(dict(snap.get("preprocess_fallbacks", {})).items()):
            fallbacks.add_metric([reason], int(n))
        yield fallbacks


class PoolCollector:
    """The pool_* families, read from node1.tryon.pool.Pool at scrape time."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Metric]:
        members = self.pool.snapshot()
        yield GaugeMetricFamily("pool_members", "Node 2s in the pool", value=len(members))
        fams: dict[str, Any] = {
            "up": GaugeMetricFamily("pool_member_up", "1 when the member takes requests", labels=["member", "source"]),
            "routed": CounterMetricFamily("pool_requests_routed", "Tries sent to the member", labels=["member"]),
            "failures": CounterMetricFamily("pool_request_failures", "Tries that failed on the member",
                                            labels=["member"]),
            "ejections": CounterMetricFamily("pool_ejections", "Times the member was ejected", labels=["member"]),
            "in_flight": GaugeMetricFamily("pool_in_flight", "Requests on the member now", labels=["member"]),
            "breaker": GaugeMetricFamily("pool_breaker_open", "1 while the member's breaker is open",
                                         labels=["member"]),
            "free": GaugeMetricFamily("pool_member_gpu_free_bytes", "Free device memory the member reports",
                                      labels=["member"]),
        }
        for m in members:
            name = m["name"]
            fams["up"].add_metric([name, m["source"]], 1.0 if m["eligible"] else 0.0)
            fams["routed"].add_metric([name], m["routed"])
            fams["failures"].add_metric([name], m["failures"])
            fams["ejections"].add_metric([name], m["ejections"])
            fams["in_flight"].add_metric([name], m["in_flight"])
            fams["breaker"].add_metric([name], 1.0 if m["breaker"] == "open" else 0.0)
            gpu = m.get("gpu") or {}
            if gpu.get("memory_total_mb") is not None and gpu.get("memory_used_mb") is not None:
                fams["free"].add_metric([name], max(gpu["memory_total_mb"] - gpu["memory_used_mb"], 0) * 2**20)
        yield from fams.values()
        yield CounterMetricFamily("pool_retries", "Requests retried on another member", value=self.pool.retries)
        yield CounterMetricFamily("pool_registrations_refused", "Node registrations refused (token)",
                                  value=self.pool.registrations_refused)


class Metrics:
    def __init__(self, runner_counters: Any = None, pool: Any = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        r.register(RunnerCountersCollector(runner_counters))
        if pool is not None:
            r.register(PoolCollector(pool))
        self.requests = Counter("tryon_requests", "Try-on requests by outcome (ok or error code)",
                                ["outcome"], registry=r)
        self.errors = Counter("tryon_errors", "Try-on errors by kind (error code)", ["kind"], registry=r)
        self.duration = Histogram("tryon_duration_seconds", "Time per try-on stage", ["stage"],
                                  buckets=DURATION_BUCKETS_S, registry=r)
        self.transport_bytes = Counter("transport_bytes", "Bytes moved over the node1<->node2 transport",
                                       registry=r)
        self.active_jobs = Gauge("tryon_active_jobs", "Try-ons queued or running", registry=r)
        self.live_sessions = Gauge("live_sessions", "Live mirror (WebRTC) sessions open", registry=r)
        self.live_frames_in = Counter("live_frames_in", "Video frames received from live sessions", registry=r)
        self.live_frames_processed = Counter("live_frames_processed", "Live frames through the per-frame path",
                                             ["status"], registry=r)
        self.live_frames_dropped = Counter("live_frames_dropped", "Live frames replaced by a newer one unprocessed",
                                           registry=r)
        self.live_frame_duration = Histogram("live_frame_duration_seconds", "Per live frame, by stage", ["stage"],
                                             buckets=LIVE_BUCKETS_S, registry=r)
        for status in ("dressed", "no_person", "error"):
            self.live_frames_processed.labels(status=status)
        for stage in ("pose", "parsing", "tryon", "total", "latency"):
            self.live_frame_duration.labels(stage=stage)
        self.requests.labels(outcome="ok")
        for stage in ("decode", *STAGES, "encode", "total"):
            self.duration.labels(stage=stage)

    def outcome(self, code: str) -> None:
        """Count one finished try-on request: code "ok" or an error code."""
        self.requests.labels(outcome=code).inc()
        if code != "ok":
            self.errors.labels(kind=code).inc()

    def observe_ms(self, timings_ms: dict[str, float]) -> None:
        for stage, ms in timings_ms.items():
            self.duration.labels(stage=stage).observe(max(float(ms), 0.0) / 1000.0)
