"""Hostile HTTP clients against the running deployment's node 1 (real gunicorn over TLS).

Each hostile client connects from its own loopback address (127.0.0.x: all of 127/8 is
loopback on Linux), so the per-client rate limiter counts it apart from the other tests.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from node1.cli.http_client import WebClient, encode_multipart
from node1.web.server import CLIENT_IO_TIMEOUT_S, HTTP_THREADS
from tests.faults.deployment import Deployment

FLOOD_CLIENT = "127.0.0.5"
LORIS_CLIENT = "127.0.0.7"
BAD_UPLOAD_CLIENT = "127.0.0.9"
HEALTH_BOUND_S = CLIENT_IO_TIMEOUT_S + 5.0   # a slow client may hold a thread at most this long
TRICKLE_INTERVAL_S = 1.0                      # well under CLIENT_IO_TIMEOUT_S: "progress" every second


def _ctx(dep: Deployment) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(Path(dep.cfg["paths"]["var_dir"]) / "tls" / "node1.crt"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _conn(dep: Deployment, source: str, timeout_s: float = 30.0) -> http.client.HTTPSConnection:
    port = int(dep.cfg["node1"]["https_port"])
    return http.client.HTTPSConnection("127.0.0.1", port, context=_ctx(dep), timeout=timeout_s,
                                       source_address=(source, 0))


def _send(conn: http.client.HTTPSConnection, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    hdrs = {k.lower(): v for k, v in resp.getheaders()}
    doc = json.loads(data) if hdrs.get("content-type", "").startswith("application/json") else data
    return resp.status, hdrs, doc


def test_request_flood_from_one_client_gets_429_and_others_are_served(deployment: Deployment,
                                                                        client: WebClient) -> None:
    limit = int(deployment.cfg["limits"]["rate_limit_per_min"])
    conn = _conn(deployment, FLOOD_CLIENT)
    statuses: list[int] = []
    limited: tuple[dict[str, str], Any] | None = None
    try:
        for _ in range(limit + 10):                  # cheap requests: no body -> 400, still counted
            status, hdrs, doc = _send(conn, "POST", "/api/tryon")
            statuses.append(status)
            if status == 429:
                limited = (hdrs, doc)
            if hdrs.get("connection", "").lower() == "close":
                conn.close()
                conn = _conn(deployment, FLOOD_CLIENT)
    finally:
        conn.close()
    assert statuses[:limit] == [400] * limit, statuses[:limit]
    assert statuses[limit:] == [429] * 10
    assert limited is not None
    hdrs, doc = limited
    assert doc["error"]["code"] == "rate_limited" and FLOOD_CLIENT in doc["error"]["message"]
    assert 1 <= int(hdrs["retry-after"]) <= 60
    # Another client (this test's own address) is not limited, and read-only endpoints still answer.
    assert client.health()["status"] == "ok"
    other = _conn(deployment, "127.0.0.1")
    try:
        assert _send(other, "POST", "/api/tryon")[0] == 400
    finally:
        other.close()


def _png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG whose header claims width x height RGB pixels, with a tiny IDAT."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize(("fields", "files", "status", "code"), [
    ({"garment": "G"}, {"photo": ("x.jpg", b"this is not an image")}, 415, "unsupported_image_type"),
    ({"garment": "G"}, {"photo": ("x.jpg", b"")}, 400, "empty_upload"),
    ({"garment": "G"}, {"photo": ("x.png", _png_claiming(20000, 20000))}, 422, "decompression_bomb"),
    ({"garment": "G"}, {"photo": ("x.jpg", b"TRUNC")}, 400, "corrupt_image"),
    ({"garment": "no-such-garment"}, {"photo": ("x.jpg", b"PHOTO")}, 422, "unknown_garment"),
    ({}, {"photo": ("x.jpg", b"PHOTO")}, 400, "missing_field"),
    ({"garment": "G"}, {}, 400, "missing_field"),
])
def test_bad_uploads_get_typed_4xx_and_the_server_keeps_serving(deployment: Deployment, client: WebClient,
                                                                photo: bytes, garment_id: str,
                                                                fields: dict[str, str], files: dict, status: int,
                                                                code: str) -> None:
    fields = {k: (garment_id if v == "G" else v) for k, v in fields.items()}
    stand_in = {b"PHOTO": photo, b"TRUNC": photo[: len(photo) // 3]}
    files = {k: (n, stand_in.get(d, d)) for k, (n, d) in files.items()}
    body, ctype = encode_multipart(fields, files)
    conn = _conn(deployment, BAD_UPLOAD_CLIENT)
    try:
        got, _, doc = _send(conn, "POST", "/api/tryon", body, {"Content-Type": ctype})
    finally:
        conn.close()
    assert (got, doc["error"]["code"]) == (status, code), doc
    assert len(doc["error"]["message"]) > 20
    assert client.health()["status"] == "ok"


class _Trickler:
    """A client that sends a valid request head, then its body one byte per TRICKLE_INTERVAL_S."""

    def __init__(self, dep: Deployment, stop: threading.Event) -> None:
        self.dep, self.stop = dep, stop
        self.outcome = "connecting"
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        port = int(self.dep.cfg["node1"]["https_port"])
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=60, source_address=(LORIS_CLIENT, 0))
            with _ctx(self.dep).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"POST /api/tryon HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"
                            b'--b\r\nContent-Disposition: form-data; name="garment"\r\n\r\n')
                self.outcome = "trickling"
                tls.settimeout(TRICKLE_INTERVAL_S)
                while not self.stop.is_set():
                    try:
                        tls.recv(4096)
                        self.outcome = "answered or cut"
                        return
                    except TimeoutError:
                        tls.sendall(b"x")
        except OSError as exc:
            self.outcome = f"cut: {type(exc).__name__}"


def test_slow_body_trickle_does_not_starve_other_clients(deployment: Deployment, client: WebClient) -> None:
    stop = threading.Event()
    tricklers = [_Trickler(deployment, stop) for _ in range(HTTP_THREADS + 4)]
    try:
        time.sleep(3.0)                                  # every trickler has sent its request head
        t0 = time.monotonic()
        probe = WebClient(deployment.url, cafile=str(Path(deployment.cfg["paths"]["var_dir"]) / "tls"
                                                      / "node1.crt"), timeout_s=HEALTH_BOUND_S)
        ok = True
        try:
            probe.health()
        except Exception:  # noqa: BLE001 - any failure to answer in time is the finding
            ok = False
        waited = time.monotonic() - t0
    finally:
        stop.set()
        for t in tricklers:
            t.thread.join(10)
    assert ok and waited < HEALTH_BOUND_S, f"/health waited {waited:.1f} s behind {len(tricklers)} slow clients"
    assert client.health()["status"] == "ok"   # and it recovers once they stop
