"""Process lifecycle shared by every long-running entry point.

A child started by the supervisor (`mirror.launch`) gets `VM_NOTIFY_FD`, the write end of a
pipe. Once it serves, it calls `notify_ready(listen=...)`, which writes one line
`READY {"component": ..., "listen": ...}` there (in the spirit of systemd's sd_notify).
Started by hand, the call only logs. `run_until_signal()` blocks until SIGTERM/SIGINT.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from typing import Any

NOTIFY_ENV = "VM_NOTIFY_FD"
READY_PREFIX = "READY "

_log = logging.getLogger(__name__)


def notify_ready(component: str, **info: Any) -> None:
    """Tell the supervisor (if any) that `component` is serving; `info` goes along as JSON."""
    msg = {"component": component, "pid": os.getpid(), **info}
    _log.info("ready: %s", json.dumps(info))
    fd_text = os.environ.pop(NOTIFY_ENV, None)
    if not fd_text:
        return
    try:
        fd = int(fd_text)
        os.write(fd, (READY_PREFIX + json.dumps(msg) + "\n").encode())
        os.close(fd)
    except (ValueError, OSError) as exc:
        _log.warning("could not notify the supervisor on fd %s: %s", fd_text, exc)


def install_stop_handlers() -> threading.Event:
    """Return an event set on SIGTERM or SIGINT (call from the main thread)."""
    stop = threading.Event()

    def _handler(signum: int, _frame: object) -> None:
        _log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    return stop


def run_until_signal(stop: threading.Event | None = None) -> None:
    """Block the main thread until SIGTERM/SIGINT."""
    stop = stop or install_stop_handlers()
    while not stop.wait(timeout=1.0):
        pass
