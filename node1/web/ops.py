"""Operations endpoints: liveness, readiness, the health document, metrics.

    GET /livez     200 {"status": "alive"} whenever this process serves HTTP (restart it if not)
    GET /readyz    200 {"status": "ready", "checks": {...}} when the models are loaded and node 2
                   answers with status "ok"; else 503 {"status": "not_ready", "checks", "reasons"}
                   with Retry-After (send no traffic here until it is ready)
    GET /health    the detailed document (always 200; `status` "ok" only when ready, else "degraded")
    GET /metrics   Prometheus text format
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

bp = Blueprint("ops", __name__)
log = logging.getLogger(__name__)
NOT_READY_RETRY_AFTER_S = 5


def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _runner_checks() -> tuple[dict[str, Any], dict[str, Any]]:
    """(readiness checks, the runner's health fields) from the runner's (cached) health probe."""
    from node1.web import state_of

    state = state_of(current_app)
    checks: dict[str, Any] = {"models_loaded": False, "node2_reachable": False, "node2_status": None}
    fields: dict[str, Any] = {"models_loaded": [], "transport": None, "node2_reachable": False,
                              "node2_status": None, "gpu": None}
    try:
        ph = state.runner.health()
    except Exception as exc:  # noqa: BLE001 - health reports whatever went wrong
        log.warning("runner health check failed: %s: %s", type(exc).__name__, exc)
        fields["error"] = f"runner health check failed: {type(exc).__name__}: {exc}"
        return checks, fields
    node2_status = ph.node2_status if ph.node2_status is not None else ("ok" if ph.node2_reachable else None)
    checks.update(models_loaded=bool(ph.models_ready), node2_reachable=bool(ph.node2_reachable),
                  node2_status=node2_status)
    fields.update(models_loaded=list(ph.models_loaded), transport=ph.transport,
                  node2_reachable=bool(ph.node2_reachable), node2_status=node2_status, gpu=ph.gpu,
                  details=ph.details)
    return checks, fields


def _not_ready_reasons(checks: dict[str, Any]) -> list[str]:
    reasons = []
    if not checks["models_loaded"]:
        reasons.append("the preprocessing models are not loaded yet")
    if not checks["node2_reachable"]:
        reasons.append("node 2's gateway does not answer")
    elif checks["node2_status"] != "ok":
        reasons.append(f"node 2 reports {checks['node2_status']!r} (see /health details.node2)")
    return reasons


@bp.get("/livez")
def livez() -> Response:
    return _no_store(jsonify({"status": "alive", "node": "node1"}))


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    checks, _fields = _runner_checks()
    reasons = _not_ready_reasons(checks)
    if reasons:
        resp = _no_store(jsonify({"status": "not_ready", "node": "node1", "checks": checks, "reasons": reasons}))
        resp.headers["Retry-After"] = str(NOT_READY_RETRY_AFTER_S)
        return resp, 503
    return _no_store(jsonify({"status": "ready", "node": "node1", "checks": checks})), 200


@bp.get("/health")
def health() -> Response:
    """status "ok" when ready (models loaded, node 2 answers and says "ok"), else "degraded" with
    `reasons` (still 200: this document is for people and dashboards; probes use /readyz)."""
    from node1.web import state_of

    state = state_of(current_app)
    checks, fields = _runner_checks()
    reasons = _not_ready_reasons(checks)
    body: dict[str, Any] = {
        "status": "degraded" if reasons else "ok", "node": "node1",
        "uptime_s": round(time.monotonic() - state.started_at, 1),
        "active_sessions": state.jobs.active,
        "stored_results": len(state.jobs.store),
        **fields,
    }
    if reasons:
        body["reasons"] = reasons
    return _no_store(jsonify(body))


@bp.get("/metrics")
def metrics() -> Response:
    from node1.web import state_of

    state = state_of(current_app)
    return Response(generate_latest(state.metrics.registry), content_type=CONTENT_TYPE_LATEST,
                    headers={"Cache-Control": "no-store"})
