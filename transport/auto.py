"""Choosing the backend: `transport.mode` = auto | rdma | tcp, under `transport.secure`.

`plan(transport_cfg)` decides what to try BEFORE anything is probed (a pure function, so the
decision is testable on any machine); `connect` and `listen` carry the plan out:

* `tcp`  — TCP (pyzmq) only; CurveZMQ when `transport.secure`.
* `rdma` — RDMA only; RdmaUnavailable (saying why) when there is no pyverbs, no device or no
  connection within `transport.rdma.connect_timeout_s`.
* `auto` — RDMA when a device exists AND the connection succeeds in time, otherwise TCP; the
  reason for falling back is logged once (WARNING) and kept in `channel.info.reason`.

Security rule: the RDMA channel has neither authentication nor encryption, so with
`transport.secure = true`
* `auto` never tries RDMA: it goes straight to CurveZMQ over TCP, logs why (INFO) and keeps the
  reason in `channel.info.reason` — RDMA is not probed at all, on any host;
* `rdma` is refused with InsecureTransport naming both keys (nothing is probed or opened): the
  configuration asks for two things that cannot both hold.

The gateway always listens on TCP in `auto` (so a node 1 without RDMA can reach it) and also on
RDMA when a device is present and `transport.secure` is off.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from transport import curve as curve_mod
from transport.base import ChannelObserver, ClientChannel, Handler, ServerChannel
from transport.endpoints import gateway_bind_endpoint, gateway_endpoint
from transport.errors import InsecureTransport, RdmaUnavailable
from transport.tcp import TcpClient
from transport.tcp_server import TcpServer

MB = 1024 * 1024
MODES = ("auto", "rdma", "tcp")
SECURE_REFUSES_RDMA = ("transport.secure = true: RDMA not used (the RDMA channel has no authentication or "
                       "encryption); CurveZMQ over TCP")

log = logging.getLogger("transport.auto")


@dataclass(frozen=True)
class ChannelPlan:
    """What `connect`/`listen` will try, decided from the configuration alone.

    Attributes:
        mode: the configured `transport.mode`.
        secure: the configured `transport.secure`.
        try_rdma: RDMA is probed and tried.
        use_tcp: TCP is used (directly, or as the fallback when RDMA cannot be used).
        reason: why, as logged and kept in `ChannelInfo.reason` when TCP is chosen without probing.
    """

    mode: str
    secure: bool
    try_rdma: bool
    use_tcp: bool
    reason: str


def plan(transport_cfg: Mapping[str, Any], mode: str | None = None) -> ChannelPlan:
    """Decide which backends to try, before probing anything.

    Args:
        transport_cfg: the `transport` section of the configuration.
        mode: overrides `transport.mode`.
    Raises:
        ValueError: an unknown mode.
        InsecureTransport: `mode` rdma together with `transport.secure = true`.
    """
    mode = mode or transport_cfg["mode"]
    if mode not in MODES:
        raise ValueError(f"transport.mode must be auto, rdma or tcp, got {mode!r}")
    secure = bool(transport_cfg.get("secure"))
    if mode == "tcp":
        return ChannelPlan(mode, secure, try_rdma=False, use_tcp=True, reason="transport.mode = tcp")
    if not secure:
        return ChannelPlan(mode, secure, try_rdma=True, use_tcp=mode == "auto", reason=f"transport.mode = {mode}")
    if mode == "auto":
        return ChannelPlan(mode, secure, try_rdma=False, use_tcp=True, reason=SECURE_REFUSES_RDMA)
    raise InsecureTransport("transport.mode = rdma with transport.secure = true: the RDMA channel has no "
                            "authentication or encryption, so it cannot honour transport.secure. Set "
                            "transport.mode to auto or tcp (CurveZMQ over TCP), or transport.secure to false "
                            "on a fabric you trust")


def max_message_bytes(cfg: Any) -> int:
    return int(cfg["transport"].get("max_message_mb", 256)) * MB


def _curve_client(cfg: Any) -> curve_mod.CurveKeys | None:
    t = cfg["transport"]
    return curve_mod.client_keys(cfg.path(t["curve_key_dir"])) if t.get("secure") else None


def _curve_server(cfg: Any) -> curve_mod.CurveKeys | None:
    t = cfg["transport"]
    return curve_mod.server_keys(cfg.path(t["curve_key_dir"])) if t.get("secure") else None


def connect(cfg: Any, mode: str | None = None) -> ClientChannel:
    """Node 1's channel to node 2's gateway, chosen by `transport.mode` (or `mode`); see `plan`."""
    t = cfg["transport"]
    chosen = plan(t, mode)
    reason = chosen.reason
    if chosen.secure and chosen.mode == "auto":
        log.info("transport auto: %s to %s", SECURE_REFUSES_RDMA, gateway_endpoint(cfg))
    if chosen.try_rdma:
        from transport.rdma import RdmaClient  # pyverbs itself is imported lazily inside

        r = t.get("rdma", {})
        try:
            return RdmaClient(cfg["node2"]["host"], int(r.get("rdma_port", 9560)), device=r.get("device"),
                              connect_timeout_s=float(r.get("connect_timeout_s", 2.0)),
                              max_message_bytes=max_message_bytes(cfg), reason=chosen.reason)
        except RdmaUnavailable as exc:
            if not chosen.use_tcp:
                raise RdmaUnavailable(f"transport.mode = rdma but RDMA cannot be used: {exc}. "
                                      "Set transport.mode to auto or tcp to use TCP instead.") from exc
            reason = f"RDMA unavailable, fell back to TCP: {exc}"
            log.warning("transport auto: using TCP to %s because %s", gateway_endpoint(cfg), exc)
    return TcpClient(gateway_endpoint(cfg), max_message_bytes=max_message_bytes(cfg), curve=_curve_client(cfg),
                     reason=reason)


def listen(cfg: Any, handler: Handler, observer: ChannelObserver | None = None,
           mode: str | None = None, max_outstanding: int | None = None) -> list[ServerChannel]:
    """Start the gateway's server channels; returns the started channels (TCP first). See `plan`."""
    t = cfg["transport"]
    chosen = plan(t, mode)
    servers: list[ServerChannel] = []
    if chosen.use_tcp:
        kwargs = {} if max_outstanding is None else {"max_outstanding": max_outstanding}
        tcp = TcpServer(gateway_bind_endpoint(cfg), handler, max_message_bytes=max_message_bytes(cfg),
                        curve=_curve_server(cfg), observer=observer, **kwargs)
        tcp.start()
        tcp.info.reason = chosen.reason
        servers.append(tcp)
        if chosen.secure and chosen.mode == "auto":
            log.info("transport auto: %s; not listening for RDMA", SECURE_REFUSES_RDMA)
    if chosen.try_rdma:
        _listen_rdma(cfg, handler, observer, chosen, servers)
    return servers


def _listen_rdma(cfg: Any, handler: Handler, observer: ChannelObserver | None, chosen: ChannelPlan,
                 servers: list[ServerChannel]) -> None:
    from transport.rdma import RdmaServer

    n2, r = cfg["node2"], cfg["transport"].get("rdma", {})
    try:
        rdma = RdmaServer(n2.get("bind_host") or n2["host"], int(r.get("rdma_port", 9560)), handler,
                          device=r.get("device"), max_message_bytes=max_message_bytes(cfg), observer=observer)
        rdma.start()
        servers.append(rdma)
    except RdmaUnavailable as exc:
        if not chosen.use_tcp:
            for s in servers:
                s.close()
            raise RdmaUnavailable(f"transport.mode = rdma but RDMA cannot be used: {exc}. "
                                  "Set transport.mode to auto or tcp to serve over TCP.") from exc
        log.warning("transport auto: not listening for RDMA because %s; serving TCP only", exc)
        servers[0].info.reason = f"RDMA unavailable, TCP only: {exc}"


def _leaves_host(endpoint: str) -> bool:
    return not endpoint.startswith(("ipc://", "inproc://"))


def server_curve_keys(cfg: Any, endpoint: str) -> curve_mod.CurveKeys | None:
    """CurveZMQ server keys for another zmq link of the deployment (the VITON service's) when
    `transport.secure` is on and the link can leave the host (tcp://); None for ipc:// and when off."""
    return _curve_server(cfg) if _leaves_host(endpoint) else None


def client_curve_keys(cfg: Any, endpoint: str) -> curve_mod.CurveKeys | None:
    """The client side of `server_curve_keys` (the gateway's link to the VITON service)."""
    return _curve_client(cfg) if _leaves_host(endpoint) else None
