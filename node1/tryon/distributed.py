"""The distributed deployment's runner: preprocessing through gvirtus on node 2's device (local CPU
fallback behind a circuit breaker), the try-on message over the transport (RDMA or TCP) to node 2's
gateway, the try-on in the VITON service there.

`build_distributed(cfg)` is node1.web's default runner factory. The request path itself is
node1.tryon.runner's, shared with the in-process runner.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from mirror import Config
from node1.tryon.catalog import WebCatalog, open_catalog
from node1.tryon.fallback import REMOTE_CALL_TIMEOUT_S, FallbackDevice, remote_connector
from node1.tryon.interface import RESULT_JPEG_QUALITY, RunnerHealth
from node1.tryon.node2_client import GatewayLink, TryOnClient
from node1.tryon.pool_runner import PoolRunner, build_pool, pool_configured
from node1.tryon.runner import Runner, load_models, loaded_models
from viton.contract import Kind

log = logging.getLogger("node1.tryon.distributed")

HEALTH_CACHE_S = 2.0          # /health probes node 2 at most this often
HEALTH_PROBE_TIMEOUT_S = 1.0


class DistributedHealth:
    """The runner's part of GET /health. What crosses the network (node 2's own health document, its
    `status` included, and the gvirtus device's properties if a session is open) is probed at most every
    HEALTH_CACHE_S; the preprocessing device's own state (breaker, last served by, reconnecting) and the
    loaded models are read fresh on every call. `needs` is the model set the configured device runs
    ("portable" for gvirtus, "cpu" for the local CPU)."""

    def __init__(self, link: GatewayLink, device: Any, needs: str = "portable") -> None:
        self.link = link
        self.device = device
        self.needs = needs
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None

    def __call__(self) -> RunnerHealth:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= HEALTH_CACHE_S:
                self._cached = (now, self._probe())
            probed = self._cached[1]
        models = loaded_models()
        details: dict[str, Any] = {"preprocess_breaker": self.device.breaker.state,
                                   "preprocess_last_served_by": self.device.last_served_by or "none yet",
                                   "preprocess_reconnecting": self.device.reconnecting,
                                   "models": models, "transport_reason": self.link.client.channel.info.reason,
                                   **probed["details"]}
        loaded = sorted({m for names in models.values() for m in names})
        return RunnerHealth(models_loaded=loaded, transport=self.link.transport,
                            node2_reachable=probed["reachable"], gpu=probed["gpu"], details=details,
                            node2_status=probed["status"], models_ready=bool(models[self.needs]))

    def _probe(self) -> dict[str, Any]:
        """The network's part: {"reachable", "status", "gpu", "details": node2 / node2_error / gvirtus_error}."""
        details: dict[str, Any] = {}
        reachable, status = False, None
        try:
            reply = self.link.health(timeout_s=HEALTH_PROBE_TIMEOUT_S)
            reachable = reply.kind == Kind.HEALTH
            details["node2"] = reply.meta
            status = str(reply.meta.get("status", "unknown")) if reachable else None
        except Exception as exc:  # noqa: BLE001 - health reports whatever went wrong
            details["node2_error"] = f"{type(exc).__name__}: {exc}"
        return {"reachable": reachable, "status": status, "gpu": self._gpu(details), "details": details}

    def _gpu(self, details: dict[str, Any]) -> dict[str, Any] | None:
        remote = self.device.remote_session()  # the live session, if any; health never opens one
        if remote is None:
            return None
        try:
            props = remote.properties()
        except Exception as exc:  # noqa: BLE001
            details["gvirtus_error"] = f"{type(exc).__name__}: {exc}"
            return None
        total, free = int(props.get("total_memory", 0)), int(props.get("free_memory", 0))
        return {"name": props.get("name"), "device_type": props.get("device_type"),
                "memory_used_mb": round((total - free) / 2**20), "memory_total_mb": round(total / 2**20),
                "temperature_c": props.get("temperature_c")}


def build_distributed(cfg: Config) -> tuple[Runner | PoolRunner, WebCatalog]:
    """node1.web's runner factory: the catalog, a transport client to node 2, and the preprocessing
    device (gvirtus remote when node1.preprocess_device is "remote", the CPU otherwise). With a `pool`
    configured (members, a DNS name or a registration token): the pool's runner (node1.tryon.pool_runner)."""

    if pool_configured(cfg):
        return build_pool(cfg)

    catalog = open_catalog(cfg)
    client = TryOnClient.from_config(cfg)
    log.info("transport to node 2: %s %s (%s)", client.channel.info.backend, client.channel.info.endpoint,
             client.channel.info.reason)
    remote = remote_connector(cfg) if cfg["node1"]["preprocess_device"] == "remote" else None
    needs = "portable" if remote is not None else "cpu"
    t0 = time.monotonic()
    load_models(cpu_fast=needs == "cpu")   # before readiness, not on the first try-on
    log.info("preprocessing models (%s) loaded in %.1f s", needs, time.monotonic() - t0)
    device = FallbackDevice(remote, local="cpu")
    link = GatewayLink(client)
    runner = Runner(catalog, device, link, client.reads, timeout_s=float(cfg["limits"]["request_timeout_s"]),
                    health_fn=DistributedHealth(link, device, needs), result_jpeg_quality=RESULT_JPEG_QUALITY)
    return runner, catalog


__all__ = ["REMOTE_CALL_TIMEOUT_S", "DistributedHealth", "GatewayLink", "build_distributed"]
