"""The JSON API in process (Flask test client) with the web-layer TEST DOUBLE pipeline.

These test the web layer only: HTTP codes, JSON bodies, SSE progress, limits, the operator
token, TTL expiry, metrics. The pipeline here is tests/web/doubles.TorsoTintTestRunner.
"""

from __future__ import annotations

import io
import re
import tempfile
import threading

import numpy as np
import pytest
from PIL import Image

from node1.tryon import Busy, Node2Unavailable, NoPersonInPhoto, TryOnResult
from node1.web import state_of
from node1.web.jobs import JobRunner
from node1.web.jobstore import MemoryJobStore
from node1.web.metrics import Metrics
from tests.web.conftest import OPERATOR_TOKEN, encode
from tests.web.doubles import TorsoTintTestRunner, torso_box
from tests.web.test_uploads import png_header_claiming

GARMENT = "test-red-tee"


@pytest.fixture(params=["memory", "redis"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Every API test here runs against both job stores (the embedded one and a real Redis)."""
    return str(request.param)


def post_tryon(client, photo: bytes | None, garment: str | None = GARMENT, query: str = "", **kw):
    data = {}
    if photo is not None:
        data["photo"] = (io.BytesIO(photo), "photo.jpg")
    if garment is not None:
        data["garment"] = garment
    return client.post("/api/tryon" + query, data=data, content_type="multipart/form-data", **kw)


def parse_sse(text: str) -> list[tuple[str, str]]:
    events = []
    for block in text.split("\n\n"):
        m = re.search(r"^event: (\w+)\ndata: (.*)$", block, re.M)
        if m:
            events.append((m.group(1), m.group(2)))
    return events


def test_sync_tryon_returns_result_torso_changed_face_not(app_factory, astronaut, astronaut_jpeg):
    client = app_factory().test_client()
    r = post_tryon(client, astronaut_jpeg)
    assert r.status_code == 200, r.json
    body = r.json
    assert set(body) == {"id", "result_url", "timings_ms", "device", "transport"}
    assert body["result_url"] == f"/api/result/{body['id']}"
    assert {"decode", "pose", "parsing", "transfer", "tryon", "encode", "total"} <= set(body["timings_ms"])
    img = client.get(body["result_url"])
    assert img.status_code == 200 and img.mimetype == "image/jpeg"
    out = np.asarray(Image.open(io.BytesIO(img.data)).convert("RGB")).astype(int)
    rows, cols = torso_box(512, 512)
    assert np.abs(out[rows, cols] - astronaut[rows, cols]).mean() > 40      # torso changed
    face = (slice(60, 200), slice(170, 300))
    assert np.abs(out[face] - astronaut[face]).mean() < 6                   # face did not
    dl = client.get(body["result_url"] + "?download=1")
    assert dl.headers["Content-Disposition"].startswith("attachment;")
    assert dl.headers["Cache-Control"] == "no-store"


def test_async_tryon_streams_stages_then_done(app_factory, astronaut_jpeg):
    client = app_factory().test_client()
    r = post_tryon(client, astronaut_jpeg, query="?mode=async")
    assert r.status_code == 202
    job = r.json
    assert job["events_url"] == f"/api/jobs/{job['id']}/events"
    ev = client.get(job["events_url"])
    assert ev.mimetype == "text/event-stream"
    events = parse_sse(ev.get_data(as_text=True))
    assert [e for e, _ in events] == ["stage"] * 4 + ["done"]
    stages = [re.search(r'"stage":"(\w+)"', d).group(1) for _, d in events[:4]]
    assert stages == ["pose", "parsing", "transfer", "tryon"]
    st = client.get(job["status_url"]).json
    assert st["state"] == "done" and st["result_url"] == job["result_url"]
    assert client.get(job["result_url"]).status_code == 200


def test_result_not_ready_while_running(app_factory, catalog, astronaut_jpeg):
    app = app_factory(runner=TorsoTintTestRunner(catalog, delay_s=0.15))
    client = app.test_client()
    job = post_tryon(client, astronaut_jpeg, query="?mode=async").json
    r = client.get(job["result_url"])
    assert r.status_code == 409 and r.json["error"]["code"] == "not_ready"
    state_of(app).jobs.wait(job["id"])
    assert client.get(job["result_url"]).status_code == 200


@pytest.mark.parametrize(("case", "status", "code", "words"), [
    ("not_image", 415, "unsupported_image_type", "not a JPEG, PNG or WebP"),
    ("truncated_jpeg", 400, "corrupt_image", "truncated or damaged"),
    ("png_20000", 422, "decompression_bomb", "too many pixels"),
    ("zero_bytes", 400, "empty_upload", "empty"),
    ("unknown_garment", 422, "unknown_garment", "no garment with id 'no-such-garment'"),
    ("missing_photo", 400, "missing_field", "'photo'"),
    ("missing_garment", 400, "missing_field", "'garment'"),
])
def test_bad_uploads_get_clear_4xx(app_factory, astronaut_jpeg, case, status, code, words):
    client = app_factory().test_client()
    photo, garment = astronaut_jpeg, GARMENT
    if case == "not_image":
        photo = b"%PDF-1.7 this is a document"
    elif case == "truncated_jpeg":
        photo = astronaut_jpeg[: len(astronaut_jpeg) // 3]
    elif case == "png_20000":
        photo = png_header_claiming(20000, 20000)
    elif case == "zero_bytes":
        photo = b""
    elif case == "unknown_garment":
        garment = "no-such-garment"
    elif case == "missing_photo":
        photo = None
    elif case == "missing_garment":
        garment = None
    r = post_tryon(client, photo, garment)
    assert r.status_code == status
    assert r.json["error"]["code"] == code
    assert words in r.json["error"]["message"]
    assert post_tryon(client, astronaut_jpeg).status_code == 200     # still serving


def test_not_multipart_and_unknown_routes(app_factory):
    client = app_factory().test_client()
    r = client.post("/api/tryon", json={"photo": "x"})
    assert r.status_code == 400 and "multipart/form-data" in r.json["error"]["message"]
    r = client.get("/api/nope")
    assert r.status_code == 404 and r.json["error"]["code"] == "not_found"
    r = client.get("/api/tryon")
    assert r.status_code == 405 and r.json["error"]["code"] == "method_not_allowed"
    r = client.get("/api/result/does-not-exist")
    assert r.status_code == 404 and "expired" in r.json["error"]["message"]


def test_body_over_limit_is_413_json(app_factory):
    client = app_factory({"limits": {"upload_max_mb": 1}}).test_client()
    r = post_tryon(client, b"\xff\xd8\xff" + b"\0" * (2 * 1024 * 1024))
    assert r.status_code == 413
    assert r.json["error"]["code"] == "upload_too_large" and "MB" in r.json["error"]["message"]


def test_uploads_are_never_spooled_to_disk(app_factory, astronaut, monkeypatch):
    noisy = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    big = encode(noisy, "PNG")              # ~800 kB: werkzeug would spool it to a temp file
    assert len(big) > 500 * 1024

    def no_disk(*a, **k):
        raise AssertionError("an upload was about to be written to a temporary file")

    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", no_disk)
    monkeypatch.setattr(tempfile, "TemporaryFile", no_disk)
    client = app_factory().test_client()
    assert post_tryon(client, big).status_code == 200


@pytest.mark.parametrize(("fail_with", "status", "code"), [
    (NoPersonInPhoto(), 422, "no_person"),
    (Node2Unavailable("gateway at 127.0.0.1:9555 refused the connection"), 503, "node2_unavailable"),
    (RuntimeError("boom"), 500, "pipeline_failed"),
])
def test_pipeline_errors_map_to_status_and_sse(app_factory, catalog, astronaut_jpeg, fail_with, status, code):
    client = app_factory(runner=TorsoTintTestRunner(catalog, fail_with=fail_with)).test_client()
    r = post_tryon(client, astronaut_jpeg)
    assert r.status_code == status and r.json["error"]["code"] == code
    if code == "no_person":
        assert "no person found in the photo" in r.json["error"]["message"]
    job = post_tryon(client, astronaut_jpeg, query="?mode=async").json
    events = parse_sse(client.get(job["events_url"]).get_data(as_text=True))
    assert [e for e, _ in events] == ["failed"]  # it failed in pose: no stage finished
    assert f'"code":"{code}"' in events[-1][1]


def test_timeout_is_504_and_job_fails(app_factory, catalog, astronaut_jpeg):
    app = app_factory({"limits": {"request_timeout_s": 0.3}}, runner=TorsoTintTestRunner(catalog, delay_s=0.2))
    r = post_tryon(app.test_client(), astronaut_jpeg)
    assert r.status_code == 504 and r.json["error"]["code"] == "timeout"
    assert "0.3 s" in r.json["error"]["message"]


def test_busy_when_queue_full(catalog, astronaut):
    gate = threading.Event()

    class Blocking(TorsoTintTestRunner):
        def run(self, photo, garment_id, progress, **kw):
            gate.wait(5)
            return super().run(photo, garment_id, progress, **kw)

    runner = JobRunner(Blocking(catalog), MemoryJobStore(60), Metrics(), timeout_s=5, workers=1, max_pending=1)
    try:
        a = runner.submit(astronaut, GARMENT, {})
        runner.submit(astronaut, GARMENT, {})
        with pytest.raises(Busy, match="already queued or running"):
            runner.submit(astronaut, GARMENT, {})
        gate.set()
        assert runner.wait(a.id).state == "done"
        assert not runner.photo_held(a.id)      # the photo is dropped once the pipeline is done
    finally:
        gate.set()
        runner.shutdown()


@pytest.mark.parametrize("store_kind", ["memory"])   # an injected clock; Redis's own expiry: test_shared_store
def test_ttl_expiry_of_results(app_factory, astronaut_jpeg):
    now = [100.0]
    app = app_factory(store=MemoryJobStore(ttl_s=600, clock=lambda: now[0]))
    client = app.test_client()
    body = post_tryon(client, astronaut_jpeg).json
    now[0] += 599
    assert client.get(body["result_url"]).status_code == 200
    now[0] += 2
    r = client.get(body["result_url"])
    assert r.status_code == 404 and r.json["error"]["code"] == "not_found"
    assert client.get(f"/api/jobs/{body['id']}").status_code == 404


def test_rate_limit_per_client(app_factory, astronaut_jpeg):
    client = app_factory({"limits": {"rate_limit_per_min": 3}}).test_client()
    for _ in range(3):
        assert post_tryon(client, astronaut_jpeg).status_code == 200
    r = post_tryon(client, astronaut_jpeg)
    assert r.status_code == 429 and r.json["error"]["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1
    other = post_tryon(client, astronaut_jpeg, environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert other.status_code == 200
    assert client.get("/health").status_code == 200          # reads are not limited


def test_garment_catalog_and_thumbnails(app_factory):
    client = app_factory().test_client()
    items = client.get("/api/garments").json["garments"]
    assert {g["id"] for g in items} == {"test-red-tee", "test-teal-tee", "test-yellow-tee"}
    thumb = client.get(items[0]["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.mimetype == "image/png"
    assert Image.open(io.BytesIO(thumb.data)).size == (120, 160)
    assert client.get("/api/garments/nope/thumbnail").status_code == 404


def _add_garment(client, token: str | None, image: bytes, name: str = "Blue shirt"):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post("/api/garments", data={"image": (io.BytesIO(image), "g.png"), "name": name},
                       content_type="multipart/form-data", headers=headers)


def test_operator_token(app_factory, astronaut):
    client = app_factory().test_client()
    img = encode(astronaut, "PNG")
    r = _add_garment(client, None, img)
    assert r.status_code == 401 and "Bearer" in r.json["error"]["message"]
    r = _add_garment(client, "wrong-token", img)
    assert r.status_code == 401 and r.json["error"]["message"].endswith("wrong")
    r = _add_garment(client, OPERATOR_TOKEN, img)
    assert r.status_code == 201, r.json
    assert r.json["name"] == "Blue shirt"
    assert r.json["id"] in {g["id"] for g in client.get("/api/garments").json["garments"]}
    flat = encode(np.full((32, 32, 3), 128, np.uint8), "PNG")
    r = _add_garment(client, OPERATOR_TOKEN, flat)
    assert r.status_code == 422 and r.json["error"]["code"] == "bad_garment"


def test_operator_api_disabled_without_token(app_factory, astronaut):
    client = app_factory(operator_token=None).test_client()
    r = _add_garment(client, OPERATOR_TOKEN, encode(astronaut, "PNG"))
    assert r.status_code == 403 and "operator_token_file" in r.json["error"]["message"]


def test_health_and_metrics(app_factory, catalog, astronaut_jpeg):
    client = app_factory().test_client()
    h = client.get("/health").json
    assert h["status"] == "ok" and h["models_loaded"] == ["web-test-double"] and h["node2_reachable"] is True
    assert {"active_sessions", "transport", "gpu", "stored_results"} <= set(h)
    post_tryon(client, astronaut_jpeg)
    post_tryon(client, b"not an image")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'tryon_requests_total{outcome="ok"} 1.0' in text
    assert 'tryon_requests_total{outcome="unsupported_image_type"} 1.0' in text
    assert 'tryon_errors_total{kind="unsupported_image_type"} 1.0' in text
    assert 'tryon_duration_seconds_count{stage="pose"} 1.0' in text
    assert "transport_bytes_total 1000.0" in text
    # the double has no counters: it made no gvirtus call and never fell back (the real counts: tests/e2e)
    assert "gvirtus_calls_total 0.0" in text and "preprocess_fallbacks_total{" not in text

    down = app_factory(runner=TorsoTintTestRunner(catalog, fail_with=Node2Unavailable())).test_client()
    assert down.get("/health").json["status"] == "degraded"


def test_liveness_readiness_and_node2_status(app_factory, catalog):
    runner = TorsoTintTestRunner(catalog)
    client = app_factory(runner=runner).test_client()
    assert client.get("/livez").json == {"status": "alive", "node": "node1"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json["status"] == "ready"
    assert r.json["checks"] == {"models_loaded": True, "node2_reachable": True, "node2_status": "ok"}
    runner.node2_status = "degraded"            # node 2 answers but VITON is down
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json["status"] == "not_ready" and r.headers["Retry-After"] == "5"
    assert "node 2 reports 'degraded'" in r.json["reasons"][0]
    h = client.get("/health").json
    assert h["status"] == "degraded" and h["node2_status"] == "degraded" and h["reasons"]
    assert client.get("/livez").status_code == 200   # the process still serves


def test_page_and_security_headers(app_factory):
    r = app_factory().test_client().get("/")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert 'id="camera"' in html and 'data-stage="parsing"' in html and "app.js" in html
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_pipeline_result_type_is_checked(app_factory, catalog, astronaut_jpeg):
    class Wrong(TorsoTintTestRunner):
        def run(self, photo, garment_id, progress, **kw):
            return {"image": photo}

    r = post_tryon(app_factory(runner=Wrong(catalog)).test_client(), astronaut_jpeg)
    assert r.status_code == 500 and "expected TryOnResult" in r.json["error"]["message"]
    assert TryOnResult.__dataclass_fields__.keys() >= {"image", "timings_ms", "device", "transport"}


def test_the_runner_gets_the_upload_itself_only_when_it_decodes_as_is(app_factory, catalog, astronaut,
                                                                       astronaut_jpeg):
    runner = TorsoTintTestRunner(catalog)
    client = app_factory(runner=runner).test_client()
    assert post_tryon(client, astronaut_jpeg).status_code == 200
    assert runner.last_source == astronaut_jpeg                 # a plain JPEG: the file may stand for its pixels
    png = io.BytesIO()
    Image.fromarray(astronaut).save(png, format="PNG")
    assert post_tryon(client, png.getvalue()).status_code == 200
    assert runner.last_source is None                           # decoded pixels only
