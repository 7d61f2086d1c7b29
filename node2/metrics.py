"""The gateway's Prometheus metrics (its own registry) and the channel observer feeding them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from transport import ChannelObserver


class GatewayMetrics(ChannelObserver):
    """Counters named as the issue asks; one instance per gateway."""

    def __init__(self, name: str = "") -> None:
        self.registry = CollectorRegistry()
        # The node 2's name as node 1's pool knows it: joined onto every series in Prometheus queries.
        self.info = Gauge("node2_info", "This node 2 (always 1), labelled with its pool name", ["name"],
                          registry=self.registry)
        self.info.labels(name=name or "node2").set(1)
        self.bytes = Counter("transport_bytes_total", "Tensor payload bytes through the gateway's channels",
                             ["direction"], registry=self.registry)
        self.malformed = Counter("transport_malformed_frames_total", "Received frames that failed the checks",
                                 ["code"], registry=self.registry)
        self.dropped = Counter("transport_dropped_replies_total", "Replies that could not be delivered",
                               ["reason"], registry=self.registry)
        self.requests = Counter("gateway_requests_total", "Requests handled by the gateway, by kind and outcome",
                                ["kind", "outcome"], registry=self.registry)
        self.latency = Histogram("gateway_tryon_seconds", "Try-on time seen by the gateway (VITON included)",
                                 registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.in_flight = Gauge("gateway_viton_in_flight", "Try-ons forwarded to VITON and not yet answered",
                               registry=self.registry)
        self.cache_items = Gauge("gateway_garment_cache_items", "Garments held in the cache",
                                 registry=self.registry)

    def on_bytes(self, direction: str, nbytes: int) -> None:
        self.bytes.labels(direction=direction).inc(nbytes)

    def on_malformed(self, code: str) -> None:
        self.malformed.labels(code=code).inc()

    def on_dropped_reply(self, reason: str) -> None:
        self.dropped.labels(reason=reason).inc()


class DeviceCollector:
    """node2_gpu_memory_{used,total}_bytes and node2_gvirtus_sessions from the health probe's device info
    (node2.device_info.DeviceInfo.info, cached there): nothing when the backend is unreachable."""

    def __init__(self, info: Callable[[], dict[str, Any]]) -> None:
        self.info = info

    def collect(self) -> Iterator[Metric]:
        info = self.info()
        gpu = info.get("gpu") or {}
        for key, name, doc in (("memory_used_mb", "node2_gpu_memory_used_bytes", "Device memory in use"),
                               ("memory_total_mb", "node2_gpu_memory_total_bytes", "Device memory in all")):
            if isinstance(gpu.get(key), int | float):
                yield GaugeMetricFamily(name, doc, value=float(gpu[key]) * 2**20)
        sessions = (info.get("gvirtus") or {}).get("sessions")
        if isinstance(sessions, int | float):
            yield GaugeMetricFamily("node2_gvirtus_sessions", "Open gvirtus sessions on the backend", value=sessions)
