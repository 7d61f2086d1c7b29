"""The live mirror's errors: node1.tryon's error tree (so node1.web.errors gives each its HTTP status
along the MRO), each with a stable `code`."""

from __future__ import annotations

from node1.tryon import BadRequest, Busy, NotFound, ServiceError


class BadOffer(BadRequest):
    """The offer is not a usable WebRTC offer (malformed JSON, SDP, type): 400."""

    code = "bad_offer"


class UnknownLiveGarment(NotFound):
    """The offer or a switch names a garment the catalog lacks: 404."""

    code = "unknown_garment"


class UnknownSession(NotFound):
    """No live session has this id (ended, timed out, or never existed): 404."""

    code = "unknown_session"


class LiveSessionsFull(Busy):  # noqa: N818 (names say what went wrong)
    """The configured maximum of concurrent live sessions is reached: 503."""

    code = "live_sessions_full"


class LiveUnavailable(ServiceError):  # noqa: N818 (names say what went wrong)
    """This deployment's runner cannot serve live video (no per-frame path): 503."""

    code = "live_unavailable"
