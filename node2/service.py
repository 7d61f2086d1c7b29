"""The gateway's request handling: try-on forwarding to VITON, the garment cache, health.

Kinds from node 1 (see transport/client.py for the tensors):
    tryon    -> `result` / `error` from VITON (+ meta.timings_ms.gateway_ms), or `need_garment`
    garment  -> `garment_stored` / `error`
    health   -> `health` (meta: the same dict as GET /health)
    other    -> `error` code unknown_kind
Every request gets exactly one reply. `handle` runs on a channel's I/O thread and never
blocks: VITON replies arrive on the VITON client's thread and are relayed from there.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from typing import Any

from node2.garment_cache import GarmentCache, GarmentRejected
from node2.metrics import GatewayMetrics
from transport import (
    ClientChannel,
    Frame,
    InvalidRequest,
    PeerUnavailable,
    RequestTimeout,
    TransportError,
    check_tensors,
    error_frame,
    new_request_id,
)
from transport.base import ChannelInfo
from transport.client import GARMENT_TENSORS, OPTIONAL_PERSON_TENSORS, PERSON_TENSORS, check_garment_id

MAX_PENDING_PER_CHANNEL = 64       # a server channel stops reading beyond this many unanswered requests
VITON_PING_TIMEOUT_S = 0.5         # /health's check of the VITON service

log = logging.getLogger("node2.gateway")

Reply = Any  # Callable[[Frame], None]


class Gateway:
    """Stateless apart from the garment cache; safe to call from several channel threads."""

    def __init__(self, viton: ClientChannel, *, request_timeout_s: float, cache: GarmentCache | None = None,
                 metrics: GatewayMetrics | None = None) -> None:
        self.viton = viton
        self.request_timeout_s = request_timeout_s
        self.cache = cache or GarmentCache()
        self.metrics = metrics or GatewayMetrics()
        self.channels: list[ChannelInfo] = []
        self._in_flight = 0
        self._lock = threading.Lock()

    # -- dispatch ----------------------------------------------------------------------------
    def handle(self, frame: Frame, reply: Reply) -> None:
        kind = frame.kind
        if kind == "tryon":
            self._tryon(frame, reply)
        elif kind == "garment":
            reply(self._count(frame, self._garment(frame)))
        elif kind == "health":
            self._health_async(frame, reply)
        else:
            reply(self._count(frame, error_frame(frame.request_id, "unknown_kind",
                                                 f"kind {kind!r} is not served here; use tryon, garment or health")))

    def _count(self, request: Frame, answer: Frame) -> Frame:
        self.metrics.requests.labels(kind=request.kind, outcome=answer.kind).inc()
        return answer

    # -- garments ----------------------------------------------------------------------------
    def _garment(self, frame: Frame) -> Frame:
        try:
            check_tensors(frame.tensors, GARMENT_TENSORS, what="garment")
            gid = check_garment_id(frame.meta.get("garment_id"))
            kind = frame.meta.get("kind")
            if not isinstance(kind, str) or not kind:
                raise InvalidRequest(f"garment meta 'kind' must be a non-empty string, got {kind!r:.40}")
            t = frame.tensors
            self.cache.put(gid, kind, t["image"], t["mask"], t["landmarks"])
        except (InvalidRequest, GarmentRejected) as exc:
            return error_frame(frame.request_id, "bad_garment", str(exc))
        self.metrics.cache_items.set(self.cache.stats()["items"])
        return Frame("garment_stored", frame.request_id, meta={"garment_id": gid})

    # -- try-on ------------------------------------------------------------------------------
    def _tryon(self, frame: Frame, reply: Reply) -> None:
        t0 = time.perf_counter()
        try:
            check_tensors(frame.tensors, PERSON_TENSORS, OPTIONAL_PERSON_TENSORS, what="tryon")
            gid = check_garment_id(frame.meta.get("garment_id"))
        except InvalidRequest as exc:
            reply(self._count(frame, error_frame(frame.request_id, "bad_request", str(exc))))
            return
        garment = self.cache.get(gid)
        if garment is None:
            reply(self._count(frame, Frame("need_garment", frame.request_id, meta={"garment_id": gid})))
            return
        tensors = dict(frame.tensors)
        tensors.update(garment_image=garment.image, garment_mask=garment.mask, garment_landmarks=garment.landmarks)
        forward = Frame("tryon", new_request_id(), meta={"garment_id": gid, "garment_kind": garment.kind,
                                                         "origin_id": frame.request_id}, tensors=tensors)
        try:
            fut = self.viton.submit(forward, self.request_timeout_s)
        except TransportError as exc:
            reply(self._count(frame, self._viton_error(frame.request_id, exc)))
            return
        with self._lock:
            self._in_flight += 1
            self.metrics.in_flight.set(self._in_flight)
        fut.add_done_callback(lambda f: self._relay(frame, f, reply, t0))

    def _relay(self, request: Frame, fut: Future[Frame], reply: Reply, t0: float) -> None:
        with self._lock:
            self._in_flight -= 1
            self.metrics.in_flight.set(self._in_flight)
        exc = fut.exception()
        if exc is not None:
            answer = self._viton_error(request.request_id, exc)
        else:
            res = fut.result()
            meta = dict(res.meta)
            timings = dict(meta.get("timings_ms") or {}) if isinstance(meta.get("timings_ms"), dict) else {}
            timings["gateway_ms"] = round((time.perf_counter() - t0) * 1000.0, 3)
            meta["timings_ms"] = timings
            answer = Frame(res.kind, request.request_id, meta=meta, tensors=res.tensors)
            self.metrics.latency.observe(time.perf_counter() - t0)
        try:
            reply(self._count(request, answer))
        except TransportError as exc:
            log.warning("could not relay the reply to %r: %s", request.request_id, exc)

    @staticmethod
    def _viton_error(request_id: str, exc: BaseException) -> Frame:
        if isinstance(exc, PeerUnavailable):
            code = "viton_unavailable"
        elif isinstance(exc, RequestTimeout):
            code = "viton_timeout"
        else:
            code = "viton_error"
        log.warning("try-on %r failed at the VITON service: %s", request_id, exc)
        return error_frame(request_id, code, f"VITON service: {exc}")

    # -- health ------------------------------------------------------------------------------
    def _health_async(self, frame: Frame, reply: Reply) -> None:
        """Answer a `health` frame without blocking the channel thread on the VITON ping."""
        t0 = time.perf_counter()
        try:
            fut = self.viton.submit(Frame("ping", f"health:{new_request_id()}"), VITON_PING_TIMEOUT_S)
        except TransportError as exc:
            reply(self._count(frame, Frame("health", frame.request_id, meta=self._health_dict(
                {"endpoint": self.viton.info.endpoint, "reachable": False, "error": str(exc)}))))
            return
        fut.add_done_callback(lambda f: reply(self._count(frame, Frame(
            "health", frame.request_id, meta=self._health_dict(self._ping_status(f, t0))))))

    def _ping_status(self, fut: Future[Frame], t0: float) -> dict[str, Any]:
        exc = fut.exception()
        if exc is not None:
            return {"endpoint": self.viton.info.endpoint, "reachable": False, "error": str(exc)}
        answer = fut.result()
        return {"endpoint": self.viton.info.endpoint, "reachable": answer.kind == "pong",
                "answer": answer.kind, "rtt_ms": round((time.perf_counter() - t0) * 1000.0, 3),
                **({"meta": answer.meta} if answer.meta else {})}

    def viton_status(self) -> dict[str, Any]:
        """Ping the VITON service (blocks up to VITON_PING_TIMEOUT_S: for the HTTP thread only)."""
        t0 = time.perf_counter()
        fut: Future[Frame] = Future()
        try:
            fut.set_result(self.viton.request(Frame("ping", f"health:{new_request_id()}"), VITON_PING_TIMEOUT_S))
        except TransportError as exc:
            fut.set_exception(exc)
        return self._ping_status(fut, t0)

    def health(self) -> dict[str, Any]:
        """The /health document (blocking; see `_health_async` for the frame version)."""
        return self._health_dict(self.viton_status())

    def _health_dict(self, viton: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            in_flight = self._in_flight
        return {
            "status": "ok" if viton["reachable"] else "degraded",
            "component": "node2.gateway",
            "channels": [{"backend": c.backend, "endpoint": c.endpoint, "reason": c.reason} for c in self.channels],
            "viton": viton,
            "viton_in_flight": in_flight,
            "garment_cache": self.cache.stats(),
        }
