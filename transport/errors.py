"""Transport errors.

    TransportError
    ├── FrameError               a message is malformed (the receiver's checks failed)
    │   ├── FrameTooLarge        over the maximum message size
    │   └── DtypeNotAllowed      a tensor dtype outside the allowlist
    ├── ChannelClosed            the channel was closed locally
    ├── PeerUnavailable          the peer does not answer (heartbeats missed, connect failed)
    ├── RequestTimeout           no reply within the per-request timeout
    ├── RdmaUnavailable          no RDMA device / pyverbs / connection (auto falls back to TCP)
    ├── InsecureTransport        transport.mode = rdma asked for with transport.secure = true
    └── InvalidRequest           a caller passed tensors that break the message contract
"""

from __future__ import annotations


class TransportError(Exception):
    """Base of every transport error."""


class FrameError(TransportError):
    """A frame is malformed: bad header, unknown dtype, size mismatch."""


class FrameTooLarge(FrameError):  # noqa: N818 (names say what went wrong)
    """A frame is larger than the configured maximum message size."""


class DtypeNotAllowed(FrameError):  # noqa: N818 (names say what went wrong)
    """A tensor's dtype is not in the allowlist."""


class ChannelClosed(TransportError):  # noqa: N818 (names say what went wrong)
    """The channel was closed."""


class PeerUnavailable(TransportError):  # noqa: N818 (names say what went wrong)
    """The peer is not reachable or stopped answering heartbeats."""


class RequestTimeout(TransportError):  # noqa: N818 (names say what went wrong)
    """No reply arrived within the request's timeout."""


class RdmaUnavailable(TransportError):  # noqa: N818 (names say what went wrong)
    """RDMA cannot be used here: no pyverbs, no device, or the connection failed."""


class InsecureTransport(TransportError):  # noqa: N818 (names say what went wrong)
    """The configuration asks for a channel that cannot meet transport.secure (RDMA has no
    authentication or encryption)."""


class InvalidRequest(TransportError):  # noqa: N818 (names say what went wrong)
    """A caller's tensors or ids do not match the message contract (checked before sending)."""
