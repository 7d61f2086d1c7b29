"""Entry point `python -m node2.gateway`: node 2's tensor gateway (RDMA / TCP in, VITON out).

Listens on node2.gateway_port (TCP, pyzmq ROUTER) and, when a device exists, on
transport.rdma.rdma_port (RDMA); serves GET /health and /metrics on node2.health_port; forwards
try-ons to the VITON service at `transport.viton_endpoint(cfg)`. Stops cleanly on SIGTERM.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any

from mirror import ConfigError, load_config, notify_ready, setup_logging
from mirror.lifecycle import install_stop_handlers, run_until_signal
from node2.device_info import DeviceInfo, gvirtus_connector
from node2.health import HealthServer
from node2.metrics import DeviceCollector, GatewayMetrics
from node2.register import REGISTER_CA_ENV, Registrar, announcement, node2_name, register_url, registration_token
from node2.service import MAX_PENDING_PER_CHANNEL, Gateway
from transport import ServerChannel, TcpClient, listen, viton_endpoint
from transport.auto import client_curve_keys, max_message_bytes

log = logging.getLogger("node2.gateway")


@dataclass
class RunningGateway:
    """Everything `start` opened, closed in reverse by `close`."""

    gateway: Gateway
    servers: list[ServerChannel]
    health: HealthServer
    viton: TcpClient
    device: DeviceInfo | None = None
    listen: str = ""

    def close(self) -> None:
        for s in self.servers:
            s.close()
        self.health.close()
        self.viton.close()


def start(c: Any) -> RunningGateway:
    """Open the VITON client, the gateway's channels and the health server (all or nothing).

    Args:
        c: a `mirror.Config`.
    """
    n2 = c["node2"]
    bind = n2.get("bind_host") or n2["host"]
    # The VITON service's channel answers pings from its I/O thread even while a try-on runs, so a
    # dead service is noticed within HEARTBEAT_TIMEOUT_S; the link is CurveZMQ when transport.secure
    # is on and VITON is reached over tcp:// (it may run on another host).
    endpoint = viton_endpoint(c)
    viton = TcpClient(endpoint, max_message_bytes=max_message_bytes(c), max_in_flight=4 * MAX_PENDING_PER_CHANNEL,
                      curve=client_curve_keys(c, endpoint))
    metrics = GatewayMetrics(name=node2_name(c))
    gateway = Gateway(viton, request_timeout_s=float(c["limits"]["request_timeout_s"]),
                      metrics=metrics)
    servers: list[ServerChannel] = []
    try:
        servers = listen(c, gateway.handle, observer=metrics, max_outstanding=MAX_PENDING_PER_CHANNEL)
        gateway.channels = [s.info for s in servers]
        device = DeviceInfo(gvirtus_connector(c))
        metrics.registry.register(DeviceCollector(device.info))
        health = HealthServer(bind, int(n2["health_port"]), lambda: {**gateway.health(), **device.info()},
                              metrics.registry)
    except BaseException:
        for s in servers:
            s.close()
        viton.close()
        raise
    health.start()
    return RunningGateway(gateway, servers, health, viton, device, listen=f"{bind}:{n2['gateway_port']}")


def _start_registrar(cfg: Any, running: RunningGateway) -> Registrar | None:
    """`--register URL` / $VM_REGISTER_URL: announce this node 2 to node 1's pool (node2.register)."""
    url = register_url(sys.argv[1:])
    if url is None:
        return None
    token = registration_token(cfg)
    if not token:
        raise ConfigError("--register needs the registration token: set pool.registration_token_file "
                          "(or VM_REGISTRATION_TOKEN) to node 1's")
    device = running.device
    info = device.info if device is not None else dict
    registrar = Registrar(url, token, announcement(cfg, info), cafile=os.environ.get(REGISTER_CA_ENV)).start()
    log.info("registering with node 1 at %s as %s", url, node2_name(cfg))
    return registrar


def main() -> int:
    setup_logging("node2.gateway")
    stop = install_stop_handlers()
    cfg = load_config()
    running = start(cfg)
    registrar: Registrar | None = None
    try:
        registrar = _start_registrar(cfg, running)
        transports = [f"{s.info.backend} {s.info.endpoint}" for s in running.servers]
        for s in running.servers:
            log.info("listening: %s %s (%s)", s.info.backend, s.info.endpoint, s.info.reason)
        log.info("forwarding try-ons to VITON at %s; health on http://%s", running.viton.info.endpoint,
                 running.health.address)
        notify_ready("node2.gateway", listen=running.listen, transport=transports,
                     health=running.health.address, viton=running.viton.info.endpoint)
        run_until_signal(stop)
    finally:
        if registrar is not None:
            registrar.close()
        running.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
