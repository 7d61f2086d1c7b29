"""The real server: `python -m node1.web` (gunicorn gthread, TLS) with the web-layer TEST DOUBLE pipeline.

Checks what only a real server shows: readiness through the supervisor's pipe, the self-signed
or configured certificate, TLS >= 1.2 enforced, bad uploads over HTTPS with the server still
serving, the body limit applied before the body is read, slow-loris clients cut off, SIGTERM.
"""

from __future__ import annotations

import json
import socket
import ssl
import stat
import time
from collections.abc import Iterator

import pytest
from cryptography import x509

from node1.web.server import HTTP_THREADS
from node1.web.tls import write_self_signed
from tests.web.server import Server, client_context, multipart, request, start_server
from tests.web.test_uploads import png_header_claiming

IO_TIMEOUT_S = 2.0
GARMENT = "test-red-tee"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("web"), env_extra={"VM_WEB_IO_TIMEOUT_S": str(IO_TIMEOUT_S)})
    yield srv
    srv.stop()


def post_tryon(server: Server, photo: bytes | None, garment: str | None = GARMENT) -> tuple[int, dict]:
    fields = {"garment": garment} if garment is not None else {}
    files = {"photo": ("photo.jpg", photo)} if photo is not None else {}
    body, ctype = multipart(fields, files)
    status, _, data = request(server, "POST", "/api/tryon", body, {"Content-Type": ctype})
    return status, json.loads(data)


def test_ready_line_and_self_signed_certificate(server: Server):
    assert server.ready["component"] == "node1.web"
    assert server.ready["listen"] == f"127.0.0.1:{server.port}"
    assert server.ready["url"] == f"https://127.0.0.1:{server.port}/"
    cert_path, key_path = server.var_dir / "tls" / "node1.crt", server.var_dir / "tls" / "node1.key"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    served = ssl.get_server_certificate(("127.0.0.1", server.port))
    assert x509.load_pem_x509_certificate(served.encode()) == x509.load_pem_x509_certificate(cert_path.read_bytes())
    status, _, body = request(server, "GET", "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"


def _handshake(server: Server, ctx: ssl.SSLContext) -> str:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:
            return str(tls.version())


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_12_and_13_accepted_tls_11_refused_by_the_server(server: Server):
    assert _handshake(server, client_context(minimum_version=ssl.TLSVersion.TLSv1_2,
                                             maximum_version=ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    assert _handshake(server, client_context(minimum_version=ssl.TLSVersion.TLSv1_3)) == "TLSv1.3"
    old = client_context(minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1_1)
    old.set_ciphers("ALL:@SECLEVEL=0")     # let this client really offer TLS 1.1
    with pytest.raises(ssl.SSLError) as err:
        _handshake(server, old)
    # The server answered with a protocol_version alert: the refusal is the server's, not the client's.
    assert "TLSV1_ALERT_PROTOCOL_VERSION" in str(err.value)


def test_bad_uploads_over_https_and_the_server_keeps_serving(server: Server, astronaut_jpeg: bytes):
    cases = [
        ("not an image", b"GIF89a-ish but really just text", GARMENT, 415, "unsupported_image_type"),
        ("truncated JPEG", astronaut_jpeg[: len(astronaut_jpeg) // 2], GARMENT, 400, "corrupt_image"),
        ("PNG claiming 20000x20000", png_header_claiming(20000, 20000), GARMENT, 422, "decompression_bomb"),
        ("0 bytes", b"", GARMENT, 400, "empty_upload"),
        ("unknown garment", astronaut_jpeg, "no-such-garment", 422, "unknown_garment"),
        ("missing photo", None, GARMENT, 400, "missing_field"),
        ("missing garment", astronaut_jpeg, None, 400, "missing_field"),
    ]
    for what, photo, garment, want_status, want_code in cases:
        status, body = post_tryon(server, photo, garment)
        assert (status, body["error"]["code"]) == (want_status, want_code), what
        assert len(body["error"]["message"]) > 20, what
    status, body = post_tryon(server, astronaut_jpeg)
    assert status == 200 and body["result_url"].startswith("/api/result/")
    status, headers, data = request(server, "GET", body["result_url"])
    assert status == 200 and headers["content-type"] == "image/jpeg" and data[:2] == b"\xff\xd8"


def test_body_limit_applies_before_the_body_is_read(server: Server):
    claimed = 50 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        with client_context().wrap_socket(raw) as tls:
            tls.sendall(f"POST /api/tryon HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                        f"Content-Length: {claimed}\r\n\r\n".encode() + b"--b\r\n" + b"\0" * 1024)
            t0 = time.monotonic()
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = tls.recv(65536)
                if not chunk:
                    break
                reply += chunk
            elapsed = time.monotonic() - t0
    assert reply.startswith(b"HTTP/1.1 413")
    assert b'"code":"upload_too_large"' in reply
    assert elapsed < IO_TIMEOUT_S        # answered at once, without waiting for the 50 MB


def test_slow_loris_clients_are_cut_off_and_others_served(server: Server):
    ctx = client_context()
    slow = []
    for _ in range(HTTP_THREADS + 4):            # more stalled clients than the server has threads
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        tls = ctx.wrap_socket(raw)
        tls.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")   # ...and never finish the headers
        slow.append(tls)
    t0 = time.monotonic()
    status, _, _ = request(server, "GET", "/health", timeout=4 * IO_TIMEOUT_S + 5)
    served_after = time.monotonic() - t0
    assert status == 200
    assert served_after < 2 * IO_TIMEOUT_S + 3
    cut = 0
    for tls in slow:
        try:
            tls.settimeout(IO_TIMEOUT_S + 3)
            if tls.recv(100) == b"":
                cut += 1
        except (ssl.SSLError, OSError):
            cut += 1
        finally:
            tls.close()
    assert cut == len(slow)
    assert server.proc.poll() is None


def test_a_stalled_upload_body_is_cut_off(server: Server, astronaut_jpeg: bytes):
    body, ctype = multipart({"garment": GARMENT}, {"photo": ("p.jpg", astronaut_jpeg)})
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        with client_context().wrap_socket(raw) as tls:
            tls.sendall(f"POST /api/tryon HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n".encode() + body[: len(body) // 2])
            t0 = time.monotonic()
            tls.settimeout(IO_TIMEOUT_S + 5)
            try:
                while tls.recv(65536):
                    pass
            except (ssl.SSLError, OSError):
                pass
            cut_after = time.monotonic() - t0
    assert cut_after < IO_TIMEOUT_S + 3
    status, _, _ = request(server, "GET", "/health")
    assert status == 200


def test_web_client_verifies_the_self_signed_certificate(server: Server, astronaut_jpeg: bytes):
    from node1.cli.http_client import ApiError, ApiUnreachable, WebClient

    client = WebClient(server.base, cafile=str(server.var_dir / "tls" / "node1.crt"))
    assert client.health()["status"] == "ok"
    garment = client.garments()[0]["id"]
    res = client.tryon(astronaut_jpeg, garment)
    assert client.result(res["result_url"])[:2] == b"\xff\xd8"
    with pytest.raises(ApiError) as err:
        client.tryon(astronaut_jpeg, "no-such-garment")
    assert (err.value.status, err.value.code) == (422, "unknown_garment")
    with pytest.raises(ApiUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
        WebClient(server.base).health()          # system CAs do not know the self-signed certificate


def test_configured_certificate_and_clean_sigterm(tmp_path):
    cert, key = tmp_path / "mine.crt", tmp_path / "mine.key"
    write_self_signed(cert, key, "127.0.0.1", days=30)
    srv = start_server(tmp_path, node1={"cert_file": str(cert), "key_file": str(key)})
    try:
        served = ssl.get_server_certificate(("127.0.0.1", srv.port))
        assert x509.load_pem_x509_certificate(served.encode()) == x509.load_pem_x509_certificate(cert.read_bytes())
        assert not (srv.var_dir / "tls").exists()
    finally:
        t0 = time.monotonic()
        rc = srv.stop()
    assert rc == 0 and time.monotonic() - t0 < 10
    assert "Shutting down" in srv.log()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
