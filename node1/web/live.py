"""The live mirror's signaling API (mounted at /api/live; described in openapi.yaml, docs/live.md).

    POST   /api/live/offer            {"sdp", "type": "offer", "garment"} -> {"sdp", "type": "answer", "session"}
                                      400 bad_offer, 404 unknown_garment, 503 live_sessions_full
    POST   /api/live/<session>/garment {"garment"} -> {"session", "garment"} (the data channel does the same)
    DELETE /api/live/<session>        ends the session -> 204

The media and sessions are node1.live's (aiortc on one asyncio loop in a thread of this process).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from node1.live.errors import BadOffer
from node1.live.session import LiveManager, LiveSettings
from node1.web import state_of

bp = Blueprint("live", __name__)
LIVE_EXTENSION_KEY = "vmirror_live"


def manager_of(app: Any) -> LiveManager:
    """The app's LiveManager, made on first use (its asyncio loop starts on the first offer)."""
    mgr = app.extensions.get(LIVE_EXTENSION_KEY)
    if mgr is None:
        state = state_of(app)
        mgr = app.extensions.setdefault(LIVE_EXTENSION_KEY, LiveManager(
            state.runner, state.metrics, LiveSettings.from_config(_live_section(state.cfg))))
    return mgr


def _live_section(cfg: Any) -> dict[str, Any] | None:
    try:
        section = cfg["live"]
    except (KeyError, TypeError):
        return None  # an older config without the section: the defaults
    return dict(section)


def _json_body() -> Any:
    body = request.get_json(silent=True)
    if body is None:
        raise BadOffer(f"send a JSON object (Content-Type application/json), got {request.mimetype or 'no body'!r}")
    return body


def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.post("/offer")
def offer() -> tuple[Response, int]:
    answer = manager_of(current_app).offer(_json_body())
    return _no_store(jsonify(answer)), 200


@bp.post("/<session_id>/garment")
def switch_garment(session_id: str) -> Response:
    body = _json_body()
    garment = body.get("garment") if isinstance(body, dict) else None
    if not isinstance(garment, str) or not garment:
        raise BadOffer(f"send {{\"garment\": ID}}, got {str(body)[:80]!r}")
    manager_of(current_app).switch(session_id, garment)
    return _no_store(jsonify({"session": session_id, "garment": garment}))


@bp.delete("/<session_id>")
def end(session_id: str) -> tuple[str, int]:
    manager_of(current_app).close(session_id)
    return "", 204
