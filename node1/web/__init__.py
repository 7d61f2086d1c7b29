"""Node 1's web application (Flask): the shopper's page, the JSON API, health and metrics.

Public face:
    create_app(cfg, runner=..., catalog=..., operator_token=...) -> Flask
    WebState                     what the app keeps in app.extensions["vmirror"]

Blueprints: `pages` (/ and static), `api` (/api/...), `live` (/api/live/..., WebRTC signaling),
`ops` (/health, /metrics). One JSON error
handler (node1.web.errors) turns every error into {"error": {"code", "message"}}.
Served by gunicorn over TLS from node1.web; Flask's development server is never used.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import IO, Any

from flask import Flask, Request

from mirror import Config
from node1.tryon import GarmentCatalog, TryOnRunner
from node1.web.jobs import Job, JobRunner
from node1.web.metrics import Metrics
from node1.web.ratelimit import RateLimiter
from node1.web.store import TTLStore

MIB = 1024 * 1024
# Room for multipart boundaries, headers and the garment field on top of the photo itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
EXTENSION_KEY = "vmirror"


class InMemoryRequest(Request):
    """Keeps uploaded files in memory: werkzeug would spool uploads over 500 kB to a temp file,
    and nothing of the shopper may be written to disk. The size is bounded by MAX_CONTENT_LENGTH."""

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        return io.BytesIO()


@dataclass
class WebState:
    cfg: Config
    runner: TryOnRunner
    catalog: GarmentCatalog
    jobs: JobRunner
    metrics: Metrics
    limiter: RateLimiter
    operator_token: str | None
    upload_max_bytes: int
    image_max_side: int
    started_at: float


def create_app(cfg: Config, runner: TryOnRunner, catalog: GarmentCatalog, *,
               operator_token: str | None | Any = ..., store: TTLStore[Job] | None = None) -> Flask:
    """Build the web app.

    Args:
        cfg: the validated configuration (limits.*, node1.workers, node1.operator_token_file).
        runner: runs try-ons (node1.tryon.interface.TryOnRunner).
        catalog: the garments shoppers can pick (node1.tryon.interface.GarmentCatalog).
        operator_token: bearer token of the operator API; default: node1.operator_token_file
            or $VM_OPERATOR_TOKEN; None disables the operator API.
        store: where jobs and results live (default: a TTLStore with limits.result_ttl_s).
    """
    from node1.web import api, errors, live, ops, pages

    limits = cfg["limits"]
    if operator_token is ...:
        operator_token = cfg.secret("node1", "operator_token_file", "VM_OPERATOR_TOKEN")
    metrics = Metrics()
    store = store if store is not None else TTLStore(ttl_s=float(limits["result_ttl_s"]))
    state = WebState(
        cfg=cfg, runner=runner, catalog=catalog,
        jobs=JobRunner(runner, store, metrics, timeout_s=float(limits["request_timeout_s"]),
                       workers=int(cfg["node1"].get("workers", 2))),
        metrics=metrics, limiter=RateLimiter(int(limits["rate_limit_per_min"])),
        operator_token=operator_token,
        upload_max_bytes=int(limits["upload_max_mb"] * MIB), image_max_side=int(limits["image_max_side"]),
        started_at=time.monotonic(),
    )
    app = Flask(__name__)
    app.request_class = InMemoryRequest
    app.config["MAX_CONTENT_LENGTH"] = state.upload_max_bytes + MULTIPART_OVERHEAD_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION_KEY] = state
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp, url_prefix="/api")
    app.register_blueprint(live.bp, url_prefix="/api/live")
    app.register_blueprint(ops.bp)
    errors.register(app)
    pages.register_security_headers(app)
    return app


def state_of(app: Flask) -> WebState:
    state: WebState = app.extensions[EXTENSION_KEY]
    return state


__all__ = ["InMemoryRequest", "WebState", "create_app", "state_of"]
