"""The JSON API (mounted at /api; described in openapi.yaml).

    POST /api/tryon                    multipart: photo (file), garment (catalog id); optional header
                                       Idempotency-Key: the same key again returns the same job
                                       -> 200 {"id", "result_url", "timings_ms", "device", "transport"}
                                       with ?mode=async (or "Prefer: respond-async"): 202 at once
                                       {"id", "status_url", "events_url", "result_url"}
    GET  /api/jobs/<id>                job state (and the 200 body above once done)
    GET  /api/jobs/<id>/events         server-sent events: stage*, then done | failed
    GET  /api/result/<id>              the result, image/jpeg (?download=1: as an attachment)
    GET  /api/garments                 {"garments": [{"id", "name", "category", "thumbnail_url"}]}
    GET  /api/garments/<id>/thumbnail  the garment's thumbnail image
    POST /api/garments                 operator only (Authorization: Bearer <token>):
                                       multipart image (file), name, category (top | bottom | dress;
                                       default top) -> 201 {"id", "name", "category", "thumbnail_url"}
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from node1.tryon import (
    BadRequest,
    MissingField,
    NotAuthorized,
    NotFound,
    OperatorApiDisabled,
    ResultNotReady,
    UnknownGarment,
)
from node1.tryon.errors import BadGarmentCategory
from node1.tryon.interface import GARMENT_CATEGORIES
from node1.web import WebState, state_of
from node1.web.errors import error_body
from node1.web.jobs import IDEMPOTENCY_KEY_MAX
from node1.web.jobstore import JobRecord, WorkerLost
from node1.web.uploads import decode_upload, decodes_as_is

bp = Blueprint("api", __name__)

SSE_KEEPALIVE_S = 10.0      # comment line so proxies and browsers keep the stream open
SSE_RETRY_MS = 2000
RATE_LIMITED_ENDPOINTS = ("api.tryon", "api.add_garment")   # node1.web.ratelimit applies the limit
IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_RE = re.compile(rf"[A-Za-z0-9._:-]{{8,{IDEMPOTENCY_KEY_MAX}}}")
REDO_ATTEMPTS = 3          # a synchronous POST re-runs its job at most this often when workers die under it


def _state() -> WebState:
    return state_of(current_app)


def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _require_multipart() -> None:
    if request.mimetype != "multipart/form-data":
        raise BadRequest(f"send multipart/form-data (got Content-Type {request.mimetype or 'none'!r}); "
                         "see openapi.yaml")


def _read_file_field(name: str, state: WebState) -> bytes:
    f = request.files.get(name)
    if f is None:
        raise MissingField(f"the form field {name!r} (a file) is missing; send multipart/form-data with "
                           f"{name}=<JPEG, PNG or WebP file>")
    return f.read(state.upload_max_bytes + 1)


def _text_field(name: str, what: str) -> str:
    value = (request.form.get(name) or "").strip()
    if not value:
        raise MissingField(f"the form field {name!r} ({what}) is missing or empty")
    return value


def _job_links(job_id: str) -> dict[str, str]:
    return {"status_url": f"/api/jobs/{job_id}", "events_url": f"/api/jobs/{job_id}/events",
            "result_url": f"/api/result/{job_id}"}


def _wants_async() -> bool:
    return request.args.get("mode") == "async" or "respond-async" in request.headers.get("Prefer", "")


@bp.post("/tryon")
def tryon() -> tuple[Response, int]:
    state = _state()
    _require_multipart()
    key = _idempotency_key()
    garment_id = _text_field("garment", "a garment id from GET /api/garments")
    data = _read_file_field("photo", state)
    try:
        state.catalog.get(garment_id)
    except (UnknownGarment, KeyError) as exc:
        raise UnknownGarment(f"no garment with id {garment_id[:80]!r}; list them with GET /api/garments") from exc
    t0 = time.perf_counter()
    photo = decode_upload(data, state.upload_max_bytes, state.image_max_side)
    decode_ms = (time.perf_counter() - t0) * 1000.0
    source = data if decodes_as_is(data) else None   # the file itself may travel instead of the pixels
    job = state.jobs.submit(photo, garment_id, {"decode": decode_ms}, idempotency_key=key, source=source)
    g.tryon_counted = True   # from here on the job counts its own outcome
    if _wants_async():
        return _no_store(jsonify({"id": job.id, **_job_links(job.id)})), 202
    for _attempt in range(REDO_ATTEMPTS):
        done = state.jobs.wait(job.id)
        if done is None:
            raise _gone(job.id)
        error = done.exception()
        if key is not None and isinstance(error, WorkerLost):
            job = state.jobs.submit(photo, garment_id, {"decode": decode_ms}, idempotency_key=key, source=source)
            continue     # the worker that ran this key's job died while we waited: run it here
        if error is not None:
            raise error
        return _no_store(jsonify(done.response)), 200
    raise WorkerLost()


def _idempotency_key() -> str | None:
    """The request's Idempotency-Key header (docs/openapi.yaml), checked; None when absent."""
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is None:
        return None
    if not IDEMPOTENCY_KEY_RE.fullmatch(key):
        raise BadRequest(f"the {IDEMPOTENCY_HEADER} header must be 8-{IDEMPOTENCY_KEY_MAX} characters of "
                         f"A-Z a-z 0-9 - _ . : (got {key[:40]!r}, {len(key)} characters)")
    # Scoped to the client's address: another client sending the same key never gets this one's job.
    return f"{request.remote_addr or 'unknown'}|{key}"


def _gone(job_id: str) -> NotFound:
    return NotFound(f"no try-on with id {job_id[:40]!r}: it never existed or expired "
                    f"(results are kept {_state().jobs.store.ttl_s:g} s)")


def _job_or_404(job_id: str) -> JobRecord:
    job = _state().jobs.get(job_id)
    if job is None:
        raise _gone(job_id)
    return job


def _job_body(job: JobRecord) -> dict[str, Any]:
    body: dict[str, Any] = {"id": job.id, "state": job.state, "stages": list(job.stages), **_job_links(job.id)}
    if job.response is not None:
        body.update(job.response)
    error = job.exception()
    if error is not None:
        body.update(error_body(error))
    return body


@bp.get("/jobs/<job_id>")
def job_status(job_id: str) -> Response:
    return _no_store(jsonify(_job_body(_job_or_404(job_id))))


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


@bp.get("/jobs/<job_id>/events")
def job_events(job_id: str) -> Response:
    """Progress from the store, so any worker (or replica) can serve the stream of any job."""
    job = _job_or_404(job_id)
    runner = _state().jobs

    def stream() -> Iterator[str]:
        yield f"retry: {SSE_RETRY_MS}\n\n"
        sent = 0
        rec: JobRecord | None = job
        while rec is not None:
            rec = runner.store.wait(job_id, lambda r, n=sent: len(r.stages) > n or r.finished,  # type: ignore[misc]
                                    min(SSE_KEEPALIVE_S, max(rec.deadline - time.time(), 0.0)))
            if rec is None:
                break
            rec = runner.check(rec)
            stages = rec.stages[sent:]
            for stage in stages:
                yield _sse("stage", {"stage": stage, "ms": rec.stage_ms.get(stage)})
            sent += len(stages)
            error = rec.exception()
            if error is not None:
                yield _sse("failed", error_body(error))
                return
            if rec.finished:
                yield _sse("done", rec.response or {})
                return
            if not stages:
                yield ": keepalive\n\n"
        yield _sse("failed", error_body(_gone(job_id)))

    return Response(stream(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@bp.get("/result/<job_id>")
def result(job_id: str) -> Response:
    job = _job_or_404(job_id)
    error = job.exception()
    if error is not None:
        raise error
    jpeg = _state().jobs.store.result(job_id) if job.state == "done" else None
    if jpeg is None:
        if job.state == "done":
            raise _gone(job_id)
        raise ResultNotReady()
    resp = Response(jpeg, mimetype="image/jpeg")
    disposition = "attachment" if request.args.get("download") else "inline"
    resp.headers["Content-Disposition"] = f'{disposition}; filename="tryon-{job.id[:12]}.jpg"'
    return _no_store(resp)


# ----------------------------------------------------------------------------- garments
@bp.get("/garments")
def list_garments() -> Response:
    items = [{"id": gi.id, "name": gi.name, "category": gi.category,
              "thumbnail_url": f"/api/garments/{gi.id}/thumbnail"}
             for gi in _state().catalog.list()]
    return _no_store(jsonify({"garments": items}))


@bp.get("/garments/<garment_id>/thumbnail")
def garment_thumbnail(garment_id: str) -> Response:
    try:
        data, mime = _state().catalog.thumbnail(garment_id)
    except (UnknownGarment, KeyError) as exc:
        raise NotFound(f"no garment with id {garment_id[:80]!r}") from exc
    resp = Response(data, mimetype=mime)
    resp.headers["Cache-Control"] = "public, max-age=3600"
    return resp


def _check_operator() -> None:
    token = _state().operator_token
    if not token:
        raise OperatorApiDisabled()
    auth = request.headers.get("Authorization", "")
    scheme, _, given = auth.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise NotAuthorized()
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise NotAuthorized("operator API: the bearer token is wrong")


@bp.post("/garments")
def add_garment() -> tuple[Response, int]:
    _check_operator()           # before the body is parsed
    state = _state()
    _require_multipart()
    name = _text_field("name", "the garment's display name")   # its length: node1.tryon.catalog
    category = request.form.get("category", "top")
    if category not in GARMENT_CATEGORIES:
        raise BadGarmentCategory(f"the garment category {category[:40]!r} is not one of "
                                 f"{', '.join(GARMENT_CATEGORIES)} (field 'category'; default 'top')")
    data = _read_file_field("image", state)
    decode_upload(data, state.upload_max_bytes, state.image_max_side)   # typed errors for bad files
    info = state.catalog.add(data, name, category)
    body = {"id": info.id, "name": info.name, "category": info.category,
            "thumbnail_url": f"/api/garments/{info.id}/thumbnail"}
    return _no_store(jsonify(body)), 201
