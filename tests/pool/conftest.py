"""Fixtures of the pool tests: node 2 health endpoints served by node 2's own HealthServer (real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from node1.tryon.pool import MemberAddress, Pool
from node2.health import HealthServer
from testing.deployment import free_ports


class Node2Health:
    """A node 2 /health on 127.0.0.1 whose document the test sets (status, GPU memory)."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host, self.port = host, port or free_ports(1)[0]
        self.doc: dict[str, Any] = {"status": "ok", "gvirtus": {"reachable": True, "sessions": 1},
                                    "gpu": {"memory_total_mb": 8000, "memory_used_mb": 0}, "viton_in_flight": 0}
        self.server: HealthServer | None = None
        self.start()

    def start(self) -> None:
        self.server = HealthServer(self.host, self.port, lambda: dict(self.doc), CollectorRegistry())
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    @property
    def address(self) -> MemberAddress:
        return MemberAddress(self.host, 1, 2, self.port)


@pytest.fixture
def healths() -> Iterator[list[Node2Health]]:
    hs = [Node2Health() for _ in range(3)]
    yield hs
    for h in hs:
        h.stop()


@pytest.fixture
def pool(healths: list[Node2Health]) -> Iterator[Pool]:
    p = Pool(lambda m: None, health_interval_s=3600.0)   # probes only when a test calls probe_now
    for i, h in enumerate(healths):
        p.add(f"n{i}", "config", h.address)
    yield p
    p.close()
