"""gvirtus: remote CUDA for torch. Node 1 runs torch work on node 2's device over gRPC.

Three layers, one session per `RemoteDevice`:

    import gvirtus
    dev = gvirtus.connect("127.0.0.1:8888", token=...)        # or gvirtus.connect_from_config(cfg)
    dev.properties()                                          # name, device_type, memory, capability
    h = dev.malloc(n); dev.memcpy_htod(h, a); dev.memcpy_dtoh(h, np.float32, shape)   # 1. runtime
    mod = dev.register_module(net, [example]); out = mod(x)                           # 2. modules
    net = dev.to_remote(net); y = net(dev.tensor(x)).cpu()                            # 3. transparent
    dev.close()

The backend is `python -m gvirtus.backend` (see gvirtus.backend); `gvirtus.testing.BackendProcess`
starts one on a free loopback port for tests and benchmarks. Errors: see gvirtus.errors.
`calls_made()` / `calls_made_by_this_thread()` count the remote calls made (gvirtus.client).
"""

from __future__ import annotations

from typing import Any

from gvirtus.client import calls_made, calls_made_by_this_thread
from gvirtus.errors import (
    AuthenticationFailed,
    GvirtusError,
    InvalidHandle,
    InvalidRequest,
    OpNotAllowed,
    QuotaExceeded,
    RemoteDeviceLost,
    RemoteExecutionError,
    SessionLost,
    SessionNotOwned,
)
from gvirtus.frontend import RemoteDevice
from gvirtus.modules import DeviceBuffer, RemoteModule
from gvirtus.protocol import CALL_TIMEOUT_S, DEFAULT_MAX_MESSAGE_MB


def connect(target: str = "127.0.0.1:8888", token: str | None = None, *, secure: bool = False,
            root_cert: bytes | str | None = None, timeout_s: float = CALL_TIMEOUT_S,
            max_message_mb: int = DEFAULT_MAX_MESSAGE_MB, client_name: str = "") -> RemoteDevice:
    """Open a session on the backend at `target` ("host:port").

    Args:
        token: the shared secret (gvirtus.token_file); None when the backend has none.
        secure: TLS; `root_cert` is the PEM (bytes or a file path) that signed the backend's certificate.
        timeout_s: deadline of each call (connecting waits at most CONNECT_TIMEOUT_S).
    Raises:
        RemoteDeviceLost: the backend is unreachable. AuthenticationFailed: the token was refused.
    """
    return RemoteDevice(target, token, secure=secure, root_cert=root_cert, timeout_s=timeout_s,
                        max_message_mb=max_message_mb, client_name=client_name)


def connect_from_config(cfg: Any, client_name: str = "", timeout_s: float = CALL_TIMEOUT_S) -> RemoteDevice:
    """Open a session using env_config: node2.host, node2.gvirtus_port, gvirtus.secure (the CA is
    gvirtus.tls_cert_file, the backend's self-signed certificate), gvirtus.max_message_mb, and the
    token from gvirtus.token_file or VM_GVIRTUS_TOKEN."""
    n2, gv = cfg["node2"], cfg["gvirtus"]
    host = n2["host"]
    target = f"[{host}]:{n2['gvirtus_port']}" if ":" in host else f"{host}:{n2['gvirtus_port']}"
    root = cfg.path(gv["tls_cert_file"]).read_bytes() if gv["secure"] and gv.get("tls_cert_file") else None
    token = cfg.secret("gvirtus", "token_file", "VM_GVIRTUS_TOKEN")
    return connect(target, token=token, secure=bool(gv["secure"]), root_cert=root, timeout_s=timeout_s,
                   max_message_mb=int(gv["max_message_mb"]), client_name=client_name)


__all__ = [
    "AuthenticationFailed", "DeviceBuffer", "GvirtusError", "InvalidHandle", "InvalidRequest", "OpNotAllowed",
    "QuotaExceeded", "RemoteDevice", "RemoteDeviceLost", "RemoteExecutionError", "RemoteModule", "SessionLost",
    "SessionNotOwned", "calls_made", "calls_made_by_this_thread", "connect", "connect_from_config",
]
