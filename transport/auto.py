"""Choosing the backend: `transport.mode` = auto | rdma | tcp.

* `tcp`  — TCP (pyzmq) only.
* `rdma` — RDMA only; RdmaUnavailable (saying why) when there is no pyverbs, no device or no
  connection within `transport.rdma.connect_timeout_s`.
* `auto` — RDMA when a device exists AND the connection succeeds in time, otherwise TCP; the
  reason for falling back is logged once (WARNING) and kept in `channel.info.reason`.

The gateway always listens on TCP in `auto` (so a node 1 without RDMA can reach it) and also on
RDMA when a device is present.
"""

from __future__ import annotations

import logging
from typing import Any

from transport import curve as curve_mod
from transport.base import ChannelObserver, ClientChannel, Handler, ServerChannel
from transport.endpoints import gateway_bind_endpoint, gateway_endpoint
from transport.errors import RdmaUnavailable
from transport.tcp import TcpClient
from transport.tcp_server import TcpServer

MB = 1024 * 1024

log = logging.getLogger("transport.auto")


def max_message_bytes(cfg: Any) -> int:
    return int(cfg["transport"].get("max_message_mb", 256)) * MB


def _curve_client(cfg: Any) -> curve_mod.CurveKeys | None:
    t = cfg["transport"]
    return curve_mod.client_keys(cfg.path(t["curve_key_dir"])) if t.get("secure") else None


def _curve_server(cfg: Any) -> curve_mod.CurveKeys | None:
    t = cfg["transport"]
    return curve_mod.server_keys(cfg.path(t["curve_key_dir"])) if t.get("secure") else None


def connect(cfg: Any, mode: str | None = None) -> ClientChannel:
    """Node 1's channel to node 2's gateway, chosen by `transport.mode` (or `mode`)."""
    t = cfg["transport"]
    mode = mode or t["mode"]
    if mode not in ("auto", "rdma", "tcp"):
        raise ValueError(f"transport.mode must be auto, rdma or tcp, got {mode!r}")
    reason = "transport.mode = tcp"
    if mode in ("auto", "rdma"):
        from transport.rdma import RdmaClient  # pyverbs itself is imported lazily inside

        r = t.get("rdma", {})
        try:
            return RdmaClient(cfg["node2"]["host"], int(r.get("rdma_port", 9560)), device=r.get("device"),
                              connect_timeout_s=float(r.get("connect_timeout_s", 2.0)),
                              max_message_bytes=max_message_bytes(cfg), reason=f"transport.mode = {mode}")
        except RdmaUnavailable as exc:
            if mode == "rdma":
                raise RdmaUnavailable(f"transport.mode = rdma but RDMA cannot be used: {exc}. "
                                      "Set transport.mode to auto or tcp to use TCP instead.") from exc
            reason = f"RDMA unavailable, fell back to TCP: {exc}"
            log.warning("transport auto: using TCP to %s because %s", gateway_endpoint(cfg), exc)
    return TcpClient(gateway_endpoint(cfg), max_message_bytes=max_message_bytes(cfg), curve=_curve_client(cfg),
                     reason=reason)


def listen(cfg: Any, handler: Handler, observer: ChannelObserver | None = None,
           mode: str | None = None, max_outstanding: int | None = None) -> list[ServerChannel]:
    """Start the gateway's server channels; returns the started channels (TCP first)."""
    t = cfg["transport"]
    mode = mode or t["mode"]
    servers: list[ServerChannel] = []
    if mode in ("auto", "tcp"):
        kwargs = {} if max_outstanding is None else {"max_outstanding": max_outstanding}
        tcp = TcpServer(gateway_bind_endpoint(cfg), handler, max_message_bytes=max_message_bytes(cfg),
                        curve=_curve_server(cfg), observer=observer, **kwargs)
        tcp.start()
        tcp.info.reason = f"transport.mode = {mode}"
        servers.append(tcp)
    if mode in ("auto", "rdma"):
        from transport.rdma import RdmaServer

        n2, r = cfg["node2"], t.get("rdma", {})
        try:
            rdma = RdmaServer(n2.get("bind_host") or n2["host"], int(r.get("rdma_port", 9560)), handler,
                              device=r.get("device"), max_message_bytes=max_message_bytes(cfg), observer=observer)
            rdma.start()
            servers.append(rdma)
        except RdmaUnavailable as exc:
            if mode == "rdma":
                for s in servers:
                    s.close()
                raise RdmaUnavailable(f"transport.mode = rdma but RDMA cannot be used: {exc}. "
                                      "Set transport.mode to auto or tcp to serve over TCP.") from exc
            log.warning("transport auto: not listening for RDMA because %s; serving TCP only", exc)
            servers[0].info.reason = f"RDMA unavailable, TCP only: {exc}"
    return servers


def _leaves_host(endpoint: str) -> bool:
    return not endpoint.startswith(("ipc://", "inproc://"))


def server_curve_keys(cfg: Any, endpoint: str) -> curve_mod.CurveKeys | None:
    """CurveZMQ server keys for another zmq link of the deployment (the VITON service's) when
    `transport.secure` is on and the link can leave the host (tcp://); None for ipc:// and when off."""
    return _curve_server(cfg) if _leaves_host(endpoint) else None


def client_curve_keys(cfg: Any, endpoint: str) -> curve_mod.CurveKeys | None:
    """The client side of `server_curve_keys` (the gateway's link to the VITON service)."""
    return _curve_client(cfg) if _leaves_host(endpoint) else None
