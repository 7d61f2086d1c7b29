"""A real child process for supervisor tests: binds $TEST_PORT, starts a grandchild, reports ready.

With TEST_CRASH_BEFORE_READY=1 it exits with status 3 before reporting ready.
With TEST_CRASH_AFTER_S=x it exits with status 4 x seconds after reporting ready.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from mirror import notify_ready, setup_logging
from mirror.lifecycle import install_stop_handlers


def main() -> int:
    log = setup_logging("test.child")
    if os.environ.get("TEST_CRASH_BEFORE_READY") == "1":
        log.error("cannot start: TEST_CRASH_BEFORE_READY is set")
        return 3
    stop = install_stop_handlers()
    port = int(os.environ["TEST_PORT"])
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with socket.create_server(("127.0.0.1", port)):
        notify_ready("test.child", listen=f"127.0.0.1:{port}", grandchild=grandchild.pid)
        crash_after = float(os.environ.get("TEST_CRASH_AFTER_S", "0"))
        start = time.monotonic()
        while not stop.wait(0.05):
            if crash_after and time.monotonic() - start > crash_after:
                return 4
    grandchild.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
