"""transport: tensor frames and channels (tcp via pyzmq, rdma via pyverbs, chosen by auto).

Public face:
    Frame, encode, decode, error_frame, new_request_id   the message format (frames.py)
    ClientChannel, ServerChannel, ChannelObserver  the channel interface (base.py)
    TcpClient, TcpServer                        pyzmq DEALER/ROUTER backend (tcp.py)
    RdmaClient, RdmaServer, probe_rdma          pyverbs backend (rdma.py; never ran on RDMA hardware)
    connect(cfg), listen(cfg, handler), plan    backend chosen by transport.mode / .secure (auto.py)
    viton_endpoint, viton_bind_endpoint, gateway_endpoint, gateway_bind_endpoint  (endpoints.py)
    errors: TransportError, FrameError, FrameTooLarge, DtypeNotAllowed, ChannelClosed,
            PeerUnavailable, RequestTimeout, RdmaUnavailable, InsecureTransport, InvalidRequest
See docs/transport.md.
"""

from __future__ import annotations

from typing import Any

from transport.auto import ChannelPlan, connect, listen, plan
from transport.base import ChannelInfo, ChannelObserver, ClientChannel, ServerChannel
from transport.endpoints import gateway_bind_endpoint, gateway_endpoint, viton_bind_endpoint, viton_endpoint
from transport.errors import (
    ChannelClosed,
    DtypeNotAllowed,
    FrameError,
    FrameTooLarge,
    InsecureTransport,
    InvalidRequest,
    PeerUnavailable,
    RdmaUnavailable,
    RequestTimeout,
    TransportError,
)
from transport.frames import Frame, decode, encode, error_frame, new_request_id
from transport.tcp import TcpClient
from transport.tcp_server import TcpServer


def __getattr__(name: str) -> Any:
    # The RDMA backend is imported on demand so that `import transport` never touches pyverbs.
    if name in ("RdmaClient", "RdmaServer", "probe_rdma"):
        from transport import rdma

        return {"RdmaClient": rdma.RdmaClient, "RdmaServer": rdma.RdmaServer, "probe_rdma": rdma.probe}[name]
    raise AttributeError(f"module 'transport' has no attribute {name!r}")


__all__ = [
    "ChannelClosed", "ChannelInfo", "ChannelObserver", "ChannelPlan", "ClientChannel", "DtypeNotAllowed", "Frame",
    "FrameError", "FrameTooLarge", "InsecureTransport", "InvalidRequest", "PeerUnavailable",
    "RdmaUnavailable", "RequestTimeout", "ServerChannel", "TcpClient", "TcpServer", "TransportError",
    "connect", "decode", "encode", "error_frame", "gateway_bind_endpoint",
    "gateway_endpoint", "listen", "new_request_id", "plan", "viton_bind_endpoint", "viton_endpoint",
]
