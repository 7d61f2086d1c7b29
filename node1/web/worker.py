"""node 1's gunicorn worker: gthread's ThreadWorker whose own error pages are the API's JSON.

gunicorn answers some requests before Flask sees them: a request line over limit_request_line (414),
too many or too large headers (431), a malformed request such as a bad Content-Length (400). Its
stock answer is an HTML page; the API promises {"error": {"code", "message"}} for every error.
`JsonErrorThreadWorker.handle_error` lets gunicorn classify and log the error as usual (into a
stand-in socket), then sends the same status as the API's JSON instead of the HTML.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

# gunicorn's status -> our error code (node1.web.errors keeps the codes of Flask's errors)
GUNICORN_ERROR_CODES = {400: "bad_request", 403: "forbidden", 414: "request_line_too_long",
                        417: "expectation_failed", 431: "headers_too_large", 500: "internal",
                        501: "not_implemented"}
_STATUS_LINE = re.compile(rb"^HTTP/1\.1 (\d{3}) ([^\r\n]*)\r\n")
_HTML_MESSAGE = re.compile(rb"</h1>\s*(.*?)\s*</body>", re.S)


class _ErrorCapture:
    """Stands in for the client socket while gunicorn writes its HTML error page."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0

    def setblocking(self, flag: bool) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.data += bytes(data)


def json_message(status: int, detail: str, limits: dict[str, int]) -> str:
    """A readable message for gunicorn's error `status` (its own detail appended)."""
    if status == 414:
        return (f"the request line (method, URL and version) is longer than {limits['line']} bytes; "
                f"send a shorter URL ({detail})")
    if status == 431:
        return (f"the request headers are too large: at most {limits['fields']} headers of at most "
                f"{limits['field_size']} bytes each ({detail})")
    if status == 500:
        return "internal server error; the details are in the server log"
    return f"the HTTP request is malformed: {detail or 'see the server log'}"


def json_error_page(status: int, reason: str, message: str) -> bytes:
    """A complete HTTP/1.1 response carrying the API's JSON error document; the connection closes."""
    code = GUNICORN_ERROR_CODES.get(status, f"http_{status}")
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Cache-Control: no-store\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


class JsonErrorThreadWorker(ThreadWorker):
    """gthread, with gunicorn's own error responses in the API's JSON (see the module docstring)."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        capture = _ErrorCapture()
        super().handle_error(req, capture, addr, exc)     # classifies, logs, writes HTML into `capture`
        m = _STATUS_LINE.match(capture.data)
        status, reason = (int(m.group(1)), m.group(2).decode("latin-1")) if m else (500, "Internal Server Error")
        found = _HTML_MESSAGE.search(capture.data)
        detail = html.unescape(found.group(1).decode("latin-1")) if found else ""
        limits = {"line": int(self.cfg.limit_request_line), "fields": int(self.cfg.limit_request_fields),
                  "field_size": int(self.cfg.limit_request_field_size)}
        try:
            util.write_nonblock(client, json_error_page(status, reason, json_message(status, detail, limits)))
        except Exception:  # noqa: BLE001 - the client may be gone; gunicorn does the same
            self.log.debug("Failed to send error message.")
