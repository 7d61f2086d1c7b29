"""A small client of node 1's HTTPS API (docs/openapi.yaml), for the CLI, benchmarks and tests.

    client = WebClient("https://127.0.0.1:8443", cafile="var/tls/node1.crt")   # or insecure=True
    client.garments()                      -> [{"id", "name", "thumbnail_url"}, ...]
    client.tryon(photo_bytes, garment_id)  -> {"id", "result_url", "timings_ms", "device", "transport"}
    client.result(result_url)              -> JPEG bytes

API errors raise `ApiError` carrying the HTTP status and the server's {"error": {"code", "message"}};
connection problems raise `ApiUnreachable`. Standard library only (http.client + ssl).
"""

from __future__ import annotations

import http.client
import json
import ssl
import uuid
from typing import Any
from urllib.parse import urlsplit

DEFAULT_TIMEOUT_S = 60.0


class ApiError(Exception):
    """The server answered with an error status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class ApiUnreachable(Exception):  # noqa: N818 (names say what went wrong)
    """No answer: connection refused, TLS failure, timeout."""


def encode_multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data request."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n")
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class WebClient:
    """One HTTPS connection per call (simple and thread-safe).

    Args:
        base_url: "https://host:port".
        cafile: PEM to verify the server with (e.g. node 1's self-signed var/tls/node1.crt).
        insecure: skip certificate verification (loopback tests only).
        timeout_s: per request.
    """

    def __init__(self, base_url: str, *, cafile: str | None = None, insecure: bool = False,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        url = urlsplit(base_url)
        if url.scheme != "https" or not url.hostname:
            raise ValueError(f"base_url must look like https://host:port, got {base_url!r}")
        self.host, self.port = url.hostname, url.port or 443
        self.timeout_s = timeout_s
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self._ctx = ctx

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self._ctx, timeout=self.timeout_s)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ApiUnreachable(f"{method} https://{self.host}:{self.port}{path} failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
        finally:
            conn.close()

    def _json(self, method: str, path: str, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> Any:
        status, hdrs, data = self.request(method, path, body, headers)
        doc: Any = None
        if hdrs.get("content-type", "").startswith("application/json"):
            doc = json.loads(data)
        if status >= 400:
            err = (doc or {}).get("error", {}) if isinstance(doc, dict) else {}
            raise ApiError(status, str(err.get("code", f"http_{status}")),
                           str(err.get("message", data[:200].decode(errors="replace"))))
        return doc

    def garments(self) -> list[dict[str, str]]:
        return list(self._json("GET", "/api/garments")["garments"])

    def health(self) -> dict[str, Any]:
        return dict(self._json("GET", "/health"))

    def tryon(self, photo: bytes, garment_id: str, filename: str = "photo.jpg") -> dict[str, Any]:
        body, ctype = encode_multipart({"garment": garment_id}, {"photo": (filename, photo)})
        return dict(self._json("POST", "/api/tryon", body, {"Content-Type": ctype}))

    def result(self, result_url: str) -> bytes:
        status, _, data = self.request("GET", result_url)
        if status != 200:
            raise ApiError(status, "result", f"GET {result_url} answered {status}")
        return data
