"""node2: the gateway (receives tensors over RDMA/TCP, hands them to VITON) and its health.

Public face:
    python -m node2.gateway           the process (see docs/transport.md)
    start(cfg) -> RunningGateway      open the channels, VITON client and health server in-process
    Gateway                           request handling: try-on forwarding, garment cache, health
    GarmentCache                      bounded LRU of garments by content hash
"""

from __future__ import annotations

from node2.garment_cache import GarmentCache, GarmentRejected
from node2.gateway import RunningGateway, start
from node2.service import Gateway

__all__ = ["Gateway", "GarmentCache", "GarmentRejected", "RunningGateway", "start"]
