"""The one JSON error handler: every error leaves as {"error": {"code", "message"}} + a 4xx/5xx.

TryOnError subclasses carry their code; their status comes from HTTP_STATUS below,
the one place where try-on errors meet HTTP status codes.
werkzeug's HTTP errors (404 route, 405 method, 413 body too large, 400 malformed form) keep
their status with a readable message. Anything else is a 500 whose details go to the log only.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from node1.tryon.errors import (
    BadGarment,
    BadGarmentCategory,
    BadRequest,
    Busy,
    CorruptImage,
    DecompressionBomb,
    EmptyUpload,
    GarmentCategoryMismatch,
    GarmentNameTooLong,
    GarmentShowsPerson,
    ImageTooLarge,
    LegsNotInView,
    MissingField,
    Node2Unavailable,
    NoPersonInPhoto,
    NotAuthorized,
    NotFound,
    OperatorApiDisabled,
    RateLimited,
    ResultNotReady,
    ServiceError,
    TryOnError,
    TryOnFailed,
    TryOnTimeout,
    UnknownGarment,
    UnsupportedImageType,
    UploadError,
    UploadTooLarge,
)

log = logging.getLogger(__name__)
MIB = 1024 * 1024
# Retry-After on every 503 (busy, node 2 unavailable) unless the error says better; 429 uses the
# limiter's own wait.
RETRY_AFTER_503_S = 5

# The one place where error types meet HTTP status codes. Looked up along the MRO, so a
# subclass the runner defines inherits its parent's status. tests/web check it is complete.
HTTP_STATUS: dict[type[TryOnError], int] = {
    TryOnError: 500,
    BadRequest: 400,
    UploadError: 400,
    EmptyUpload: 400,
    UploadTooLarge: 413,
    UnsupportedImageType: 415,
    CorruptImage: 400,
    ImageTooLarge: 422,
    DecompressionBomb: 422,
    MissingField: 400,
    UnknownGarment: 422,
    NoPersonInPhoto: 422,
    LegsNotInView: 422,
    BadGarment: 422,
    GarmentShowsPerson: 422,
    GarmentNameTooLong: 422,
    BadGarmentCategory: 422,
    GarmentCategoryMismatch: 422,
    NotFound: 404,
    ResultNotReady: 409,
    NotAuthorized: 401,
    OperatorApiDisabled: 403,
    RateLimited: 429,
    ServiceError: 503,
    Busy: 503,
    Node2Unavailable: 503,
    TryOnTimeout: 504,
    TryOnFailed: 500,
}


def http_status(exc: TryOnError) -> int:
    """The HTTP status for `exc` (nearest class in its MRO listed in `HTTP_STATUS`)."""
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def error_body(exc: TryOnError) -> dict[str, Any]:
    """The JSON error document: {"error": {"code", "message"}}."""
    return {"error": {"code": exc.code, "message": exc.message}}


# werkzeug HTTP error class name -> our code
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "upload_too_large",
               415: "unsupported_media_type"}
FORM_TOO_LARGE = "form_too_large"   # 413 from the multipart parser's part limits, not the body size
TRYON_ENDPOINT = "api.tryon"


def _json_error(status: int, code: str, message: str) -> Response:
    resp = jsonify({"error": {"code": code, "message": message}})
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return _retry_after(resp)


def _retry_after(resp: Response, seconds: float | None = None) -> Response:
    """Every 503 and 429 says when to come back."""
    if resp.status_code in (429, 503) and "Retry-After" not in resp.headers:
        resp.headers["Retry-After"] = str(max(int((seconds or RETRY_AFTER_503_S) + 0.999), 1))
    return resp


def _count_tryon_failure(code: str) -> None:
    """Count a try-on request that failed before or outside its job (the job counts its own)."""
    if request.endpoint == TRYON_ENDPOINT and not g.get("tryon_counted"):
        from flask import current_app

        from node1.web import state_of

        state_of(current_app).metrics.outcome(code)
        g.tryon_counted = True


def handle_tryon_error(exc: TryOnError) -> Response:
    status = http_status(exc)
    _count_tryon_failure(exc.code)
    resp = jsonify(error_body(exc))
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    _retry_after(resp, exc.retry_after_s if isinstance(exc, RateLimited) else None)
    if status >= 500:
        log.warning("%s %s -> %d %s: %s", request.method, request.path, status, exc.code, exc.message)
    return resp


def handle_http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    code = _HTTP_CODES.get(status, f"http_{status}")
    if isinstance(exc, RequestEntityTooLarge):
        code, message = _too_large(exc)
    elif status == 404:
        message = f"no such endpoint: {request.method} {request.path}"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.path}"
    else:
        message = exc.description or exc.name
    _count_tryon_failure(code)
    resp = _json_error(status, code, message)
    if status == 413:
        # The rest of the body is not read; do not keep the connection (and drain it).
        resp.headers["Connection"] = "close"
    return resp


def _too_large(exc: RequestEntityTooLarge) -> tuple[str, str]:
    """(code, message) of a 413 naming the limit that refused it: the body size (MAX_CONTENT_LENGTH,
    checked against Content-Length before the body is read) or the form parser's part limits."""
    from flask import current_app

    cfg = current_app.config
    body_limit = int(cfg.get("MAX_CONTENT_LENGTH") or 0)
    length = request.content_length
    if length is not None and length > body_limit:
        return "upload_too_large", (f"the request body is {length / MIB:.1f} MB, larger than {body_limit / MIB:.1f} MB "
                                    "(limits.upload_max_mb plus form overhead); send a smaller photo")
    parts, part_bytes = int(cfg["MAX_FORM_PARTS"]), int(cfg["MAX_FORM_MEMORY_SIZE"])
    if length is None:
        return "upload_too_large", (f"the request body exceeds a limit: at most {body_limit / MIB:.1f} MB in all, "
                                    f"at most {parts} form parts, at most {part_bytes} bytes of headers or text "
                                    "per part")
    return FORM_TOO_LARGE, (f"the multipart form exceeds the form parser's limits: at most {parts} parts, and at "
                            f"most {part_bytes} bytes of headers or text per part (a field name or a text value); "
                            "send only the fields this endpoint documents")


def handle_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error in %s %s", request.method, request.path)
    _count_tryon_failure("internal")
    return _json_error(500, "internal", "internal server error; the details are in the server log")


def register(app: Flask) -> None:
    app.register_error_handler(TryOnError, handle_tryon_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(Exception, handle_unexpected)
