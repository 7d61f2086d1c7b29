"""The pool of node 2s, for operators and for node 2s themselves (docs/pool.md).

    GET  /api/nodes             operator token: every member (source, health, load, breaker, last error),
                                the pool's retries (and the latest retried requests' latency), refused
                                registrations, DNS state
    POST /api/nodes/register    registration token (pool.registration_token_file): a node 2 joins
                                {"name", "host"?, "gvirtus_port", "gateway_port", "health_port", "device"?,
                                "gpu_memory_total_mb"?, "max_jobs"?} -> 200 {"name", "heartbeat_interval_s", ...}
    POST /api/nodes/heartbeat   registration token: {"name"} -> 200, or 404 when it must register again

Without a pool (the single node2 section) GET answers {"pool": false, "members": []} and
registration answers 403 (it is off).
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from node1.tryon import NotFound, OperatorApiDisabled
from node1.web import state_of
from node1.web.api import _check_operator

bp = Blueprint("nodes", __name__)
log = logging.getLogger(__name__)


def _pool_runner() -> Any:
    runner = state_of(current_app).runner
    return runner if hasattr(runner, "pool") else None


def _registry() -> Any:
    runner = _pool_runner()
    discovery = getattr(runner, "discovery", None)
    registry = getattr(discovery, "registry", None)
    if registry is None:
        raise OperatorApiDisabled("node registration is off: set pool.registration_token_file on node 1 "
                                  "(or VM_REGISTRATION_TOKEN)")
    return registry


def _bearer() -> str | None:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None


def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("")
def list_nodes() -> Response:
    _check_operator()
    runner = _pool_runner()
    if runner is None:
        return _no_store(jsonify({"pool": False, "members": [],
                                  "message": "node 1 uses the one node2 section (no pool configured)"}))
    discovery = runner.discovery
    dns = getattr(discovery, "dns", None)
    body = {"pool": True, "members": runner.pool.snapshot(), "retries": runner.pool.retries,
            "recent_retries": list(runner.pool.recent_retries),
            "registrations_refused": runner.pool.registrations_refused,
            "registration": getattr(discovery, "registry", None) is not None,
            "dns": None if dns is None else {"name": dns.name, "resolved": dns.resolved, "last_error": dns.last_error}}
    return _no_store(jsonify(body))


@bp.post("/register")
def register() -> tuple[Response, int]:
    registry = _registry()
    peer = request.remote_addr or "unknown"
    registry.check_token(_bearer(), peer)
    reply = registry.register(request.get_json(silent=True), peer)
    return _no_store(jsonify(reply)), 200


@bp.post("/heartbeat")
def heartbeat() -> tuple[Response, int]:
    registry = _registry()
    registry.check_token(_bearer(), request.remote_addr or "unknown")
    body = request.get_json(silent=True)
    name = body.get("name") if isinstance(body, dict) else None
    if not registry.heartbeat(name):
        raise NotFound(f"no registered node 2 named {str(name)[:80]!r}; register again")
    return _no_store(jsonify({"name": name, "ok": True})), 200
