"""HEALTHCHECK of the three images: exit 0 when this container's role serves, 1 (with the reason) if not.

    node1   GET https://<node1.host>:<https_port>/health answers 200 (the web app serves; its
            "status" says whether node 2 is reachable, which is node 2's own check)
    node2   GET http://<bind host>:<health_port>/health answers with the gateway's JSON (200 "ok", or
            503 "degraded" while VITON is away: VITON's container has its own check) and the gvirtus
            port accepts a connection
    viton   a "health" frame to the try-on service's socket is answered within PROBE_TIMEOUT_S

Run inside the container (the image's HEALTHCHECK, `podman healthcheck run`, or the launcher's
`exec`); it reads the same mounted configuration and VM__ overrides as the services.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mirror import config as config_mod  # noqa: E402
from mirror.errors import ConfigError  # noqa: E402

PROBE_TIMEOUT_S = 5.0
UNSPECIFIED = {"0.0.0.0", "::", ""}


class Unhealthy(Exception):  # noqa: N818 (names say what went wrong)
    """The role does not serve; the message says what failed."""


def _local(host: str) -> str:
    """Where to reach a service bound to `host` from inside its own container."""
    return "127.0.0.1" if host in UNSPECIFIED else host


def _get(conn: http.client.HTTPConnection, path: str) -> tuple[int, bytes]:
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise Unhealthy(f"GET {conn.host}:{conn.port}{path}: {type(exc).__name__}: {exc}") from exc
    finally:
        conn.close()


def check_node1(cfg: config_mod.Config) -> str:
    n1 = cfg["node1"]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # our own server on this container's address: only liveness is asked
    conn = http.client.HTTPSConnection(_local(n1["host"]), int(n1["https_port"]), context=ctx,
                                       timeout=PROBE_TIMEOUT_S)
    status, body = _get(conn, "/health")
    if status != 200:
        raise Unhealthy(f"node 1 /health answered HTTP {status}: {body[:200]!r}")
    return f"node1 {json.loads(body).get('status')}"


def check_node2(cfg: config_mod.Config) -> str:
    n2 = cfg["node2"]
    host = _local(n2.get("bind_host") or n2["host"])
    status, body = _get(http.client.HTTPConnection(host, int(n2["health_port"]), timeout=PROBE_TIMEOUT_S), "/health")
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise Unhealthy(f"node 2 /health answered HTTP {status} without JSON: {body[:200]!r}") from exc
    if status not in (200, 503):
        raise Unhealthy(f"node 2 /health answered HTTP {status}: {doc}")
    try:
        socket.create_connection((host, int(n2["gvirtus_port"])), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise Unhealthy(f"the gvirtus backend does not accept connections on {host}:{n2['gvirtus_port']}: "
                        f"{exc}") from exc
    return f"node2 {doc.get('status')}"


def check_viton(cfg: config_mod.Config) -> str:
    import zmq

    from transport.endpoints import viton_bind_endpoint
    from transport.frames import Frame, decode, encode

    endpoint = viton_bind_endpoint(cfg)
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint[len("tcp://"):].rpartition(":")
        endpoint = f"tcp://{_local(host.strip('[]'))}:{port}"
    sock: Any = zmq.Context.instance().socket(zmq.DEALER)  # pyzmq types send_multipart narrower than it takes
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send_multipart(encode(Frame("health", "healthcheck")))
        if not sock.poll(int(PROBE_TIMEOUT_S * 1000)):
            raise Unhealthy(f"the VITON service at {endpoint} did not answer within {PROBE_TIMEOUT_S:.0f} s")
        reply = decode(sock.recv_multipart())
    finally:
        sock.close()
    if reply.kind != "health" or reply.meta.get("status") != "ok":
        raise Unhealthy(f"the VITON service at {endpoint} answered {reply.kind} {reply.meta}")
    return f"viton ok ({reply.meta.get('engine')} on {reply.meta.get('device')})"


CHECKS = {"node1": check_node1, "node2": check_node2, "viton": check_viton}


def main() -> int:
    role = os.environ.get("VM_ROLE", "")
    if role not in CHECKS:
        print(f"unhealthy: VM_ROLE must be one of {', '.join(CHECKS)}, got {role!r}", file=sys.stderr)
        return 1
    try:
        print(CHECKS[role](config_mod.load()))
    except (ConfigError, Unhealthy) as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
