"""What the module and transparent layers need of a remote device session (gvirtus.frontend.RemoteDevice),
as a Protocol: they call back into the session without importing the frontend, which imports them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from gvirtus.graph import CapturedGraph


class DeviceSession(Protocol):
    """A connected RemoteDevice, as gvirtus.modules and gvirtus.transparent use it."""

    generation: int            # bumped on every reconnect: registrations of an older one are stale
    _conn: Any                 # the live gvirtus.client.Connection (its `data` channel, if any)

    @property
    def session_id(self) -> str: ...

    @property
    def max_message_bytes(self) -> int: ...

    def _call(self, method_name: str, request: Any, what: str, timeout_s: float | None = None) -> Any: ...

    def _register(self, cap: CapturedGraph) -> tuple[int, bool]: ...

    def op_stream(self) -> Any: ...

    def free_many(self, handles: Sequence[Any]) -> None: ...

    def memcpy_dtoh(self, buf: Any) -> Any: ...
