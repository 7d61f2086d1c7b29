"""node2: the gateway (receives tensors over RDMA/TCP, hands them to VITON) and its health.

Public face:
    python -m node2.gateway           the process (see docs/transport.md)
    start(cfg) -> RunningGateway      open the channels, VITON client and health server in-process
    Gateway                           request handling: try-on forwarding, garment cache, health
    GarmentCache                      bounded LRU of garments by content hash
"""

from __future__ import annotations

from typing import Any

from node2.garment_cache import GarmentCache, GarmentRejected
from node2.service import Gateway


def __getattr__(name: str) -> Any:
    # Lazy, so that `python -m node2.gateway` does not find its module already imported.
    if name in ("start", "RunningGateway"):
        from node2 import gateway

        return getattr(gateway, name)
    raise AttributeError(f"module 'node2' has no attribute {name!r}")


__all__ = ["Gateway", "GarmentCache", "GarmentRejected", "RunningGateway", "start"]
