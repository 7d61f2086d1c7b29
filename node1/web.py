"""PLACEHOLDER entry point of node1.web: binds its port and reports ready (replaced by its issue)."""

from __future__ import annotations

import socket

from mirror import load_config, notify_ready, setup_logging
from mirror.lifecycle import run_until_signal


def main() -> int:
    setup_logging("node1.web")
    cfg = load_config()
    host, port = cfg["node1"]["host"], cfg["node1"]["https_port"]
    with socket.create_server((host, port)):
        notify_ready("node1.web", listen=f"{host}:{port}")
        run_until_signal()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
