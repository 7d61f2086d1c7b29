"""HTTP on node2.health_port:

    GET /livez    200 {"status": "alive"} whenever this process serves (liveness)
    GET /readyz   200 {"status": "ready"} when the health document's status is "ok" (VITON answers
                  and is ok), else 503 {"status": "not_ready", "health_status", "reason"} + Retry-After
    GET /health   the detailed JSON document (200 when its status is "ok", else 503)
    GET /metrics  Prometheus text
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

SHUTDOWN_POLL_S = 0.05  # how often serve_forever checks for shutdown()
NOT_READY_RETRY_AFTER_S = 5


class HealthServer:
    """`health()` returns a JSON-able dict with a "status" key ("ok" -> 200, else 503)."""

    def __init__(self, host: str, port: int, health: Callable[[], dict[str, Any]],
                 registry: CollectorRegistry) -> None:
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path == "/health":
                    body = outer._health()
                    self._send_json(200 if body.get("status") == "ok" else 503, body)
                elif path == "/livez":
                    self._send_json(200, {"status": "alive"})
                elif path == "/readyz":
                    status = outer._health().get("status")
                    if status == "ok":
                        self._send_json(200, {"status": "ready"})
                    else:
                        self._send_json(503, {"status": "not_ready", "health_status": status,
                                              "reason": "the health document's status is not 'ok' (see /health)"})
                elif path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
                else:
                    self._send(404, "text/plain", b"not found: use /livez, /readyz, /health or /metrics\n")

            def _send_json(self, code: int, body: dict[str, Any]) -> None:
                self._send(code, "application/json", json.dumps(body).encode())

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                if code == 503:
                    self.send_header("Retry-After", str(NOT_READY_RETRY_AFTER_S))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's name)
                pass  # scrapes every few seconds would flood the log

        self._health_fn = health
        self.httpd = ThreadingHTTPServer((host, port), _Handler)
        self.httpd.daemon_threads = True
        self.address = f"{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_S},
                                        name="health-http", daemon=True)

    def _health(self) -> dict[str, Any]:
        try:
            return self._health_fn()
        except Exception as exc:  # a broken probe must still answer
            return {"status": "error", "error": f"{type(exc).__name__}: {exc}"}

    def start(self) -> str:
        self._thread.start()
        return self.address

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
