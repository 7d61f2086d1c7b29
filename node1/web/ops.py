"""Operations endpoints: GET /health (JSON) and GET /metrics (Prometheus text format)."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)


@bp.get("/health")
def health() -> Response:
    """status "ok" when the runner answers and node 2 is reachable, else "degraded" (still 200:
    the web app itself serves; load balancers read `status`)."""
    from node1.web import state_of

    state = state_of(current_app)
    body: dict[str, Any] = {
        "status": "ok", "node": "node1",
        "uptime_s": round(time.monotonic() - state.started_at, 1),
        "active_sessions": state.jobs.active,
        "stored_results": len(state.jobs.store),
        "models_loaded": [], "transport": None, "node2_reachable": False, "gpu": None,
    }
    try:
        ph = state.runner.health()
        body.update(models_loaded=list(ph.models_loaded), transport=ph.transport,
                    node2_reachable=bool(ph.node2_reachable), gpu=ph.gpu, details=ph.details)
        if not ph.node2_reachable:
            body["status"] = "degraded"
    except Exception as exc:
        log.warning("runner health check failed: %s: %s", type(exc).__name__, exc)
        body.update(status="degraded", error=f"runner health check failed: {type(exc).__name__}: {exc}")
    resp = jsonify(body)
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/metrics")
def metrics() -> Response:
    from node1.web import state_of

    state = state_of(current_app)
    return Response(generate_latest(state.metrics.registry), content_type=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})
