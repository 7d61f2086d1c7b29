"""PLACEHOLDER entry point of node2.gateway: binds its port and reports ready (replaced by its issue)."""

from __future__ import annotations

import socket

from mirror import load_config, notify_ready, setup_logging
from mirror.lifecycle import run_until_signal


def main() -> int:
    setup_logging("node2.gateway")
    cfg = load_config()
    host, port = cfg["node2"]["host"], cfg["node2"]["gateway_port"]
    with socket.create_server((host, port)):
        notify_ready("node2.gateway", listen=f"{host}:{port}")
        run_until_signal()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
