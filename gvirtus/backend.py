"""PLACEHOLDER entry point of gvirtus.backend: binds its port and reports ready (replaced by its issue)."""

from __future__ import annotations

import socket

from mirror import load_config, notify_ready, setup_logging
from mirror.lifecycle import run_until_signal


def main() -> int:
    setup_logging("gvirtus.backend")
    cfg = load_config()
    host, port = cfg["node2"]["host"], cfg["node2"]["gvirtus_port"]
    with socket.create_server((host, port)):
        notify_ready("gvirtus.backend", listen=f"{host}:{port}")
        run_until_signal()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
