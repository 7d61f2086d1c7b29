"""Node 1's web application (Flask): the shopper's page, the JSON API, health and metrics.

Public face:
    create_app(cfg, runner=..., catalog=..., operator_token=...) -> Flask
    WebState                     what the app keeps in app.extensions["vmirror"]

Blueprints: `pages` (/ and static), `api` (/api/...), `live` (/api/live/..., WebRTC signaling),
`nodes` (/api/nodes/..., the pool of node 2s), `ops` (/health, /metrics). One JSON error
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
from node1.web.jobs import JobRunner
from node1.web.jobstore import JobStore, MemoryJobStore
from node1.web.metrics import Metrics

MIB = 1024 * 1024
# Room for multipart boundaries, headers and the garment field on top of the photo itself.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# The multipart parser's own limits (werkzeug answers 413 past them): our forms have 2 fields.
MAX_FORM_PARTS = 64
# Headers or text of one part (a field name, a garment id). werkzeug also applies it to its read
# buffer (64 KiB reads), so it must stay well above that: Flask's default.
MAX_FORM_PART_BYTES = 500_000
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
    limiter: Any                # flask_limiter.Limiter (node1.web.ratelimit)
    operator_token: str | None
    upload_max_bytes: int
    image_max_side: int
    started_at: float


def create_app(cfg: Config, runner: TryOnRunner, catalog: GarmentCatalog, *,
               operator_token: str | None | Any = ..., store: JobStore | None = None) -> Flask:
    """Build the web app.

    Args:
        cfg: the validated configuration (limits.*, node1.workers, node1.operator_token_file).
        runner: runs try-ons (node1.tryon.interface.TryOnRunner).
        catalog: the garments shoppers can pick (node1.tryon.interface.GarmentCatalog).
        operator_token: bearer token of the operator API; default: node1.operator_token_file
            or $VM_OPERATOR_TOKEN; None disables the operator API.
        store: where jobs and results live (default: from `node1.store`, see `open_store`).
    """
    from node1.web import api, errors, live, nodes, ops, pages

    limits = cfg["limits"]
    if operator_token is ...:
        operator_token = cfg.secret("node1", "operator_token_file", "VM_OPERATOR_TOKEN")
    metrics = Metrics(runner_counters=getattr(runner, "counters", None), pool=getattr(runner, "pool", None))
    store = store if store is not None else open_store(cfg)
    state = WebState(
        cfg=cfg, runner=runner, catalog=catalog,
        jobs=JobRunner(runner, store, metrics, timeout_s=float(limits["request_timeout_s"]),
                       workers=int(cfg["node1"].get("workers", 2))),
        metrics=metrics, limiter=None,
        operator_token=operator_token,
        upload_max_bytes=int(limits["upload_max_mb"] * MIB), image_max_side=int(limits["image_max_side"]),
        started_at=time.monotonic(),
    )
    app = Flask(__name__)
    app.request_class = InMemoryRequest
    app.config["MAX_CONTENT_LENGTH"] = state.upload_max_bytes + MULTIPART_OVERHEAD_BYTES
    app.config["MAX_FORM_PARTS"] = MAX_FORM_PARTS
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_FORM_PART_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION_KEY] = state
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp, url_prefix="/api")
    app.register_blueprint(live.bp, url_prefix="/api/live")
    app.register_blueprint(nodes.bp, url_prefix="/api/nodes")
    app.register_blueprint(ops.bp)
    errors.register(app)
    pages.register_security_headers(app)
    _install_limiter(app, state, store)
    return app


def open_store(cfg: Config) -> JobStore:
    """The job store `node1.store` names: "memory" (this process) or "redis" (`node1.redis`, shared)."""
    ttl_s = float(cfg["limits"]["result_ttl_s"])
    if cfg["node1"]["store"] != "redis":
        return MemoryJobStore(ttl_s=ttl_s)
    import redis

    from mirror import ConfigError
    from mirror.config import redis_address
    from node1.web.redisstore import RedisJobStore, connect

    address = redis_address(cfg)
    try:
        return RedisJobStore(connect(address), ttl_s=ttl_s, prefix=cfg["node1"]["redis"]["key_prefix"])
    except redis.RedisError as exc:
        raise ConfigError(f"node1.store = \"redis\": Redis at {address} does not answer ({exc}); start it "
                          "(start_application.sh does when node1.redis.managed) or fix node1.redis") from exc


def _install_limiter(app: Flask, state: WebState, store: JobStore) -> None:
    """Flask-Limiter on the store's storage: memory, or the same Redis (and connection pool)."""
    from node1.web.api import RATE_LIMITED_ENDPOINTS
    from node1.web.ratelimit import install_limiter

    per_min = int(state.cfg["limits"]["rate_limit_per_min"])
    client = getattr(store, "r", None)
    if client is None:
        state.limiter = install_limiter(app, per_min, RATE_LIMITED_ENDPOINTS)
        return
    import redis

    from node1.web.jobstore import StoreUnavailable
    from node1.web.redisstore import quick_retry

    kw = client.connection_pool.connection_kwargs
    uri = f"redis+unix://{kw['path']}" if "path" in kw else f"redis://{kw['host']}:{kw['port']}"
    state.limiter = install_limiter(app, per_min, RATE_LIMITED_ENDPOINTS, storage_uri=uri,
                                    storage_options={"connection_pool": client.connection_pool,
                                                     "retry": quick_retry()},
                                    key_prefix=f"{getattr(store, 'prefix', '')}limit")

    def store_down(exc: redis.RedisError) -> Any:
        from node1.web.errors import handle_tryon_error

        return handle_tryon_error(StoreUnavailable(f"the shared store (Redis) did not answer: {exc}"))

    app.register_error_handler(redis.RedisError, store_down)


def state_of(app: Flask) -> WebState:
    state: WebState = app.extensions[EXTENSION_KEY]
    return state


__all__ = ["InMemoryRequest", "WebState", "create_app", "state_of"]
