"""Regression tests against the real server (`python -m node1.web`: gunicorn gthread over TLS) for the
defects found by hand (issue 18): every error body is the API's JSON, even those gunicorn itself
sends; each 413 names the limit that refused it; every 503 and 429 carries Retry-After; the operator
API refuses a photo of a person and an over-long name with typed 422s.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from garments.demo import DEMO_DESIGNS
from node1.web.server import LIMIT_REQUEST_FIELD_SIZE, LIMIT_REQUEST_FIELDS, LIMIT_REQUEST_LINE
from tests.web.conftest import OPERATOR_TOKEN, encode
from tests.web.server import Server, client_context, multipart, request, start_server

GARMENT = "test-red-tee"
READ_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_catalog_dir: Path) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("web-errors"), env_extra={"VM_TEST_CATALOG": "demo"},
                       paths={"catalog_dir": str(demo_catalog_dir)})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def down_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Every try-on fails as if node 2 were down; the rate limit is 3 a minute."""
    srv = start_server(tmp_path_factory.mktemp("web-down"), env_extra={"VM_TEST_FAIL": "node2_unavailable"},
                       limits={"rate_limit_per_min": 3})
    yield srv
    srv.stop()


def raw_exchange(server: Server, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes over TLS; read the response until the server closes (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=READ_TIMEOUT_S) as raw:
        with client_context().wrap_socket(raw) as tls:
            tls.sendall(data)
            reply = b""
            while True:
                try:
                    chunk = tls.recv(65536)
                except (ConnectionResetError, TimeoutError):
                    break
                if not chunk:
                    break
                reply += chunk
                head, sep, body = reply.partition(b"\r\n\r\n")
                if sep:
                    hdrs = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:])
                    if len(body) >= int(hdrs.get("Content-Length", -1)) >= 0:
                        break
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _json_error(status: int, headers: dict[str, str], body: bytes) -> dict[str, str]:
    assert headers["content-type"].startswith("application/json"), (status, headers, body[:200])
    doc = json.loads(body)
    assert set(doc) == {"error"} and set(doc["error"]) == {"code", "message"}, doc
    return dict(doc["error"])


def test_url_too_long_is_a_json_414(server: Server):
    path = "/api/garments?" + "a" * (LIMIT_REQUEST_LINE + 100)
    status, headers, body = raw_exchange(server, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    err = _json_error(status, headers, body)
    assert status == 414 and err["code"] == "request_line_too_long"
    assert str(LIMIT_REQUEST_LINE) in err["message"]


@pytest.mark.parametrize("case", ["one header too large", "too many headers"])
def test_headers_too_large_is_a_json_431(server: Server, case: str):
    if case == "one header too large":
        extra = f"X-Big: {'b' * (LIMIT_REQUEST_FIELD_SIZE + 10)}\r\n"
    else:
        extra = "".join(f"X-H{i}: v\r\n" for i in range(LIMIT_REQUEST_FIELDS + 5))
    status, headers, body = raw_exchange(server, f"GET /health HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
    err = _json_error(status, headers, body)
    assert status == 431 and err["code"] == "headers_too_large"
    assert str(LIMIT_REQUEST_FIELDS) in err["message"] and str(LIMIT_REQUEST_FIELD_SIZE) in err["message"]


@pytest.mark.parametrize("length", ["abc", "-5", "1, 2"])
def test_bad_content_length_is_a_json_400(server: Server, length: str):
    status, headers, body = raw_exchange(
        server, f"POST /api/tryon HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode())
    err = _json_error(status, headers, body)
    assert status == 400 and err["code"] == "bad_request" and "malformed" in err["message"]


def test_the_server_still_serves_after_gunicorn_errors(server: Server):
    status, _, body = request(server, "GET", "/livez")
    assert status == 200 and json.loads(body)["status"] == "alive"


def test_a_huge_field_name_gets_413_naming_the_form_limit(server: Server):
    name = "n" * (1024 * 1024)
    body, ctype = multipart({name: "x", "garment": GARMENT}, {})
    status, headers, data = request(server, "POST", "/api/tryon", body, {"Content-Type": ctype})
    err = _json_error(status, headers, data)
    assert status == 413 and err["code"] == "form_too_large"
    assert "500000 bytes of headers or text per part" in err["message"] and "MB" not in err["message"]


def test_twenty_thousand_fields_get_413_naming_the_parts_limit(server: Server):
    from node1.web import MAX_FORM_PARTS

    body, ctype = multipart({f"f{i}": "x" for i in range(20_000)}, {})
    status, headers, data = request(server, "POST", "/api/tryon", body, {"Content-Type": ctype})
    err = _json_error(status, headers, data)
    assert status == 413 and err["code"] == "form_too_large"
    assert f"at most {MAX_FORM_PARTS} parts" in err["message"]


def test_a_body_over_the_size_limit_gets_413_naming_the_size(server: Server):
    head = (f"POST /api/tryon HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {11 * 1024 * 1024}\r\n\r\n--b\r\n")
    status, headers, data = raw_exchange(server, head.encode() + b"\0" * 1024)
    err = _json_error(status, headers, data)
    assert status == 413 and err["code"] == "upload_too_large"
    assert "larger than 10.1 MB" in err["message"] and "11.0 MB" in err["message"]


def test_every_503_and_429_has_retry_after(down_server: Server, astronaut: np.ndarray):
    photo = encode(astronaut, "JPEG")
    statuses = []
    for _ in range(5):
        body, ctype = multipart({"garment": GARMENT}, {"photo": ("me.jpg", photo)})
        status, headers, data = request(down_server, "POST", "/api/tryon", body, {"Content-Type": ctype})
        statuses.append(status)
        err = _json_error(status, headers, data)
        assert status in (503, 429), (status, err)
        assert int(headers["retry-after"]) >= 1, headers
        assert err["code"] == ("node2_unavailable" if status == 503 else "rate_limited")
    assert statuses == [503, 503, 503, 429, 429]
    status, headers, _ = request(down_server, "GET", "/readyz")
    assert status == 503 and int(headers["retry-after"]) >= 1


def _add_garment(server: Server, image: bytes, name: str) -> tuple[int, dict[str, str]]:
    body, ctype = multipart({"name": name}, {"image": ("g.png", image)})
    status, headers, data = request(server, "POST", "/api/garments", body,
                                    {"Content-Type": ctype, "Authorization": f"Bearer {OPERATOR_TOKEN}"}, timeout=60)
    return status, (_json_error(status, headers, data) if status >= 400 else json.loads(data))


def test_operator_api_refuses_a_person_and_a_long_name(server: Server, astronaut: np.ndarray):
    status, err = _add_garment(server, encode(astronaut, "PNG"), "Astronaut")
    assert status == 422 and err["code"] == "garment_shows_person", err
    status, err = _add_garment(server, encode(astronaut, "PNG"), "x" * 500)
    assert status == 422 and err["code"] == "garment_name_too_long" and "limit is 120" in err["message"]
    status, _, data = request(server, "GET", "/api/garments")
    assert status == 200 and len(json.loads(data)["garments"]) == len(DEMO_DESIGNS)      # nothing was added
