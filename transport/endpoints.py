"""Where the VITON service listens and where the gateway connects: one derivation, used by both.

    viton_endpoint(cfg)       the address a client (node 2's gateway) CONNECTS to
    viton_bind_endpoint(cfg)  the address the VITON service BINDS its ROUTER socket to
    gateway_endpoint(cfg)     node 1 -> node 2 gateway (TCP channel), connect side
    gateway_bind_endpoint(cfg) the gateway's bind side

Rules (`viton.endpoint` non-null wins for both sides):
    DEPLOYMENT=LOCAL          ipc://<paths.var_dir>/viton.sock  (absolute path; the binder creates
                              var_dir if missing)
    otherwise                 tcp://<host of the node in viton.placement>:<viton.port>;
                              the service binds tcp://<that node's bind host>:<viton.port>
"""

from __future__ import annotations

from typing import Any

VITON_IPC_NAME = "viton.sock"


def _section(cfg: Any, name: str) -> dict:
    return cfg[name]


def _var_dir(cfg: Any) -> str:
    var_dir = _section(cfg, "paths").get("var_dir", "var")
    path = cfg.path(var_dir) if hasattr(cfg, "path") else var_dir
    return str(path)


def viton_endpoint(cfg: Any) -> str:
    """The zmq address of the VITON service, as a client connects to it.

    Args:
        cfg: a `mirror.Config` (or a mapping with the same sections).
    Returns:
        e.g. "ipc:///work/main/var/viton.sock" (LOCAL) or "tcp://10.0.0.2:9557".
    """
    vt = _section(cfg, "viton")
    if vt.get("endpoint"):
        return str(vt["endpoint"])
    if _deployment(cfg) == "LOCAL":
        return f"ipc://{_var_dir(cfg)}/{VITON_IPC_NAME}"
    placement = vt.get("placement", "node2")
    host = _section(cfg, placement)["host"]
    return f"tcp://{_bracket(host)}:{int(vt['port'])}"


def viton_bind_endpoint(cfg: Any) -> str:
    """The zmq address the VITON service binds (its ROUTER socket)."""
    vt = _section(cfg, "viton")
    if vt.get("endpoint"):
        return str(vt["endpoint"])
    if _deployment(cfg) == "LOCAL":
        return viton_endpoint(cfg)
    placement = vt.get("placement", "node2")
    node = _section(cfg, placement)
    host = node.get("bind_host") or node["host"]
    return f"tcp://{_bracket(host)}:{int(vt['port'])}"


def gateway_endpoint(cfg: Any) -> str:
    """The TCP channel address node 1 connects to: tcp://<node2.host>:<node2.gateway_port>."""
    n2 = _section(cfg, "node2")
    return f"tcp://{_bracket(n2['host'])}:{int(n2['gateway_port'])}"


def gateway_bind_endpoint(cfg: Any) -> str:
    """The gateway's bind address: tcp://<node2.bind_host or host>:<node2.gateway_port>."""
    n2 = _section(cfg, "node2")
    return f"tcp://{_bracket(n2.get('bind_host') or n2['host'])}:{int(n2['gateway_port'])}"


def _deployment(cfg: Any) -> str:
    dep = getattr(cfg, "deployment", None)
    return str(dep if dep is not None else cfg["DEPLOYMENT"])


def _bracket(host: str) -> str:
    """IPv6 literals need brackets in zmq tcp:// addresses."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
