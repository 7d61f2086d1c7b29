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
                                        remote device is configured, by reason (node1.pose.device)
    transport_bytes_total               bytes moved over the node 1 <-> node 2 transport
    tryon_active_jobs                   try-ons queued or running now
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric

from node1.tryon import STAGES

# Seconds; from a fast local try-on (tens of ms) to the request timeout.
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


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


class Metrics:
    def __init__(self, runner_counters: Any = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        r.register(RunnerCountersCollector(runner_counters))
        self.requests = Counter("tryon_requests", "Try-on requests by outcome (ok or error code)",
                                ["outcome"], registry=r)
        self.errors = Counter("tryon_errors", "Try-on errors by kind (error code)", ["kind"], registry=r)
        self.duration = Histogram("tryon_duration_seconds", "Time per try-on stage", ["stage"],
                                  buckets=DURATION_BUCKETS_S, registry=r)
        self.transport_bytes = Counter("transport_bytes", "Bytes moved over the node1<->node2 transport",
                                       registry=r)
        self.active_jobs = Gauge("tryon_active_jobs", "Try-ons queued or running", registry=r)
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
