"""Errors of the remote device, raised in the client (frontend) and mapped from the backend.

    GvirtusError                  base of everything this package raises
    ├── RemoteDeviceLost          the backend cannot be reached or dropped the session; open a new one
    │   └── SessionLost           the backend no longer knows this session (restart, missed heartbeats)
    │       └── SessionNotOwned   a valid session id sent on a connection that did not open the session
    ├── AuthenticationFailed      wrong or missing token when opening a session
    ├── QuotaExceeded             the session's memory quota (or the device's memory) is exhausted
    ├── OpNotAllowed              an op outside the backend's allowlist of compute ops
    ├── InvalidHandle             a handle that this session does not own (freed, other session, unknown)
    ├── InvalidRequest            a malformed argument (dtype, shape, size, offset, message too large)
    └── RemoteExecutionError      the op or module ran on the backend and failed there

The backend sends the class name in the `gvirtus-error` trailing metadata; `from_wire` maps it
back (falling back on the gRPC status code), so every backend error arrives typed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


class GvirtusError(Exception):
    """Base of the remote device's errors."""


def each_then_raise(action: Callable[[Any], object], items: Iterable[Any]) -> None:
    """``action(item)`` for every item, even after one fails; then the first GvirtusError, if any (freeing
    many handles: every one is tried, and the error names the first that was not freed)."""
    first: GvirtusError | None = None
    for item in items:
        try:
            action(item)
        except GvirtusError as exc:
            first = first or exc
    if first is not None:
        raise first


class RemoteDeviceLost(GvirtusError):  # noqa: N818 - names from the design
    """The backend is unreachable or the connection broke. The process keeps running:
    open a new session with `gvirtus.connect` (or `RemoteDevice.reconnect()`)."""


class SessionLost(RemoteDeviceLost):  # noqa: N818
    """The backend does not know this session any more (it restarted, or the session missed
    its heartbeats and was freed). Every handle of the session is gone."""


class SessionNotOwned(SessionLost):  # noqa: N818
    """The session id is valid but the call came on another connection than the one that opened
    the session (gRPC status PERMISSION_DENIED). A session is bound to its gRPC connection and to
    the first data-channel connection that presents it; this connection must open its own."""


class AuthenticationFailed(GvirtusError):  # noqa: N818 - names from the design
    """The backend refused the token. Check gvirtus.token_file / VM_GVIRTUS_TOKEN on both nodes."""


class QuotaExceeded(GvirtusError):  # noqa: N818 - names from the design
    """The allocation would take the session past its memory quota (gvirtus.session_quota_mb),
    or the device ran out of memory."""


class OpNotAllowed(GvirtusError):  # noqa: N818 - names from the design
    """The op is not in the backend's allowlist of compute ops (see gvirtus.allowlist)."""


class InvalidHandle(GvirtusError):  # noqa: N818 - names from the design
    """The handle is not owned by this session (freed, unknown, or another session's)."""


class InvalidRequest(GvirtusError):  # noqa: N818 - names from the design
    """A malformed request: unknown dtype, wrong shape, out-of-range offset, too large a message."""


class RemoteExecutionError(GvirtusError):
    """The computation failed on the backend; the message carries the backend's error."""


ERRORS: dict[str, type[GvirtusError]] = {
    cls.__name__: cls
    for cls in (GvirtusError, RemoteDeviceLost, SessionLost, SessionNotOwned, AuthenticationFailed, QuotaExceeded,
                OpNotAllowed, InvalidHandle, InvalidRequest, RemoteExecutionError)
}


def error_class(name: str) -> type[GvirtusError]:
    """The error class named `name` (as sent by the backend), else `RemoteExecutionError`."""
    return ERRORS.get(name, RemoteExecutionError)
