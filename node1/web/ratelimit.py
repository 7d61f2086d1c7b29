"""Per-client rate limit through Flask-Limiter: at most N POSTs per client in any sliding 60 s window.

`limits.rate_limit_per_min` POSTs to /api/tryon and /api/garments per client address (node 1 is
not meant to sit behind a proxy; see docs/web.md), counted with Flask-Limiter's moving window on
the same storage as the jobs: this process's memory for `node1.store: "memory"`, the shared Redis
for `"redis"` (so every worker and replica counts the same client together). Flask-Limiter's 429
becomes the API's JSON error (`rate_limited`) with a Retry-After header.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from node1.tryon import RateLimited

WINDOW = "minute"
STRATEGY = "moving-window"
MIN_RETRY_AFTER_S = 1.0
WINDOW_S = 60.0          # no client waits longer than the window (the storages round reset_at up to whole seconds)


def install_limiter(app: Flask, per_min: int, endpoints: tuple[str, ...], *, storage_uri: str = "memory://",
                    storage_options: dict[str, Any] | None = None, key_prefix: str = "") -> Limiter:
    """Limit `endpoints` (Flask endpoint names, already registered on `app`) to `per_min` per client.

    Args:
        storage_uri: "memory://" (this process) or Flask-Limiter's Redis URI
            ("redis+unix:///path/redis.sock", "redis://host:port").
        storage_options: passed to the storage (e.g. {"connection_pool": pool} to share one).
        key_prefix: keeps apps sharing one Redis apart.
    """
    if per_min < 1:
        raise ValueError(f"rate limit must be >= 1 request per minute, got {per_min}")
    limiter = Limiter(get_remote_address, app=app, storage_uri=storage_uri,
                      storage_options=storage_options or {}, strategy=STRATEGY, key_prefix=key_prefix,
                      headers_enabled=False, default_limits=[])
    rule = f"{per_min} per {WINDOW}"
    for endpoint in endpoints:
        limited: Any = limiter.limit(rule)(app.view_functions[endpoint])
        app.view_functions[endpoint] = limited   # this app's view only (the blueprint is shared by apps)

    def too_many(exc: RateLimitExceeded) -> Response:
        from node1.web.errors import handle_tryon_error

        return handle_tryon_error(_as_api_error(limiter, per_min))

    app.register_error_handler(RateLimitExceeded, too_many)
    return limiter


def _as_api_error(limiter: Limiter, per_min: int) -> RateLimited:
    current = limiter.current_limit
    retry = MIN_RETRY_AFTER_S
    if current is not None:
        retry = min(max(float(current.reset_at) - time.time(), MIN_RETRY_AFTER_S), WINDOW_S - 0.5)
    client = get_remote_address()
    return RateLimited(f"more than {per_min} requests per minute from {client}; retry in {retry:.0f} s",
                       retry_after_s=retry)
