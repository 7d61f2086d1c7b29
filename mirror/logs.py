"""One log format for every process: time, node, component, request id, level, message.

    2026-11-22T16:40:01.123Z node2 gvirtus.backend req=- INFO serving on 127.0.0.1:8888 (cpu)

`setup(component, node)` configures the root logger once per process; `request_context(rid)`
tags every record logged inside it (also across threads that copy the context) with the id.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("vm_request_id", default="-")
LOG_FORMAT = "%(asctime)s %(node)s %(component)s req=%(request_id)s %(levelname)s %(message)s"


class _ContextFilter(logging.Filter):
    def __init__(self, node: str, component: str) -> None:
        super().__init__()
        self.node = node
        self.component = component

    def filter(self, record: logging.LogRecord) -> bool:
        record.node = getattr(record, "node", self.node)
        record.component = getattr(record, "component", self.component)
        record.request_id = _request_id.get()
        return True


class _UTCFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        t = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{t}.{int(record.msecs):03d}Z"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not the one at setup: a test that
    runs a CLI's main() in-process sets logging up on pytest's captured stream, which is closed by the
    time a background thread of a later test logs ("--- Logging error --- ... I/O operation on closed file")."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def setup(component: str, node: str | None = None, level: str | None = None) -> logging.Logger:
    """Configure this process's logging; returns the component's logger.

    Args:
        component: e.g. "gvirtus.backend", "node1.web".
        node: "node1" / "node2"; default `$VM_NODE` or the component's first part.
        level: default `$VM_LOG_LEVEL` or INFO.
    """
    node = node or os.environ.get("VM_NODE") or component.split(".", maxsplit=1)[0]
    handler = _StderrHandler()
    handler.setFormatter(_UTCFormatter(LOG_FORMAT))
    handler.addFilter(_ContextFilter(node, component))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level or os.environ.get("VM_LOG_LEVEL", "INFO"))
    return logging.getLogger(component)


def current_request_id() -> str:
    return _request_id.get()


@contextlib.contextmanager
def request_context(request_id: str) -> Iterator[None]:
    """Tag log records emitted inside this block with `request_id`."""
    token = _request_id.set(request_id)
    try:
        yield
    finally:
        _request_id.reset(token)
