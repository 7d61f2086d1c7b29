"""The gateway's request handling: try-on forwarding to VITON, the garment cache, health.

Kinds from node 1 (the try-on contract, viton/contract.py, names every tensor and code):
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
from transport import ClientChannel, Frame, PeerUnavailable, RequestTimeout, TransportError, error_frame
from transport.base import ChannelInfo
from transport.frames import new_request_id
from viton import contract
from viton.contract import ContractError, ErrorCode, Kind

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
        if kind == Kind.TRYON:
            self._tryon(frame, reply)
        elif kind == Kind.GARMENT:
            reply(self._count(frame, self._garment(frame)))
        elif kind == Kind.HEALTH:
            self._health_async(frame, reply)
        else:
            reply(self._count(frame, error_frame(frame.request_id, ErrorCode.UNKNOWN_KIND,
                                                 f"kind {kind!r} is not served here; use tryon, garment or health")))

    def _count(self, request: Frame, answer: Frame) -> Frame:
        self.metrics.requests.labels(kind=request.kind, outcome=answer.kind).inc()
        return answer

    # -- garments ----------------------------------------------------------------------------
    def _garment(self, frame: Frame) -> Frame:
        try:
            contract.check_tensors(frame.tensors, contract.GARMENT_TENSORS, tuple(contract.GARMENT_TENSORS),
                                   what="garment")
            gid = contract.check_garment_id(frame.meta.get("garment_id"))
            kind = contract.check_garment_kind(frame.meta.get("kind"))
            t = frame.tensors
            self.cache.put(gid, kind, t["image"], t["mask"], t["landmarks"])
        except (ContractError, GarmentRejected) as exc:
            return error_frame(frame.request_id, ErrorCode.BAD_GARMENT, str(exc))
        self.metrics.cache_items.set(self.cache.stats()["items"])
        return Frame(Kind.GARMENT_STORED, frame.request_id, meta={"garment_id": gid})

    # -- try-on ------------------------------------------------------------------------------
    def _tryon(self, frame: Frame, reply: Reply) -> None:
        t0 = time.perf_counter()
        try:
            # Shapes and dtypes here; which tensors the engine reads, the VITON service checks.
            contract.check_person(frame.tensors, ("person",))
            gid = contract.check_garment_id(frame.meta.get("garment_id"))
            fmt, quality = contract.check_result_request(frame.meta)
        except ContractError as exc:
            reply(self._count(frame, error_frame(frame.request_id, exc.code, str(exc))))
            return
        garment = self.cache.get(gid)
        if garment is None:
            reply(self._count(frame, Frame(Kind.NEED_GARMENT, frame.request_id, meta={"garment_id": gid})))
            return
        meta, tensors = contract.viton_request(frame.tensors, garment.image, garment.mask, garment.landmarks,
                                               garment_kind=garment.kind, garment_id=gid,
                                               origin_id=frame.request_id,
                                               result=contract.result_request(fmt, quality))
        forward = Frame(Kind.TRYON, new_request_id(), meta=meta, tensors=tensors)  # type: ignore[arg-type]
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
            code = ErrorCode.VITON_UNAVAILABLE
        elif isinstance(exc, RequestTimeout):
            code = ErrorCode.VITON_TIMEOUT
        else:
            code = ErrorCode.VITON_ERROR
        log.warning("try-on %r failed at the VITON service: %s", request_id, exc)
        return error_frame(request_id, code, f"VITON service: {exc}")

    # -- health ------------------------------------------------------------------------------
    def _health_async(self, frame: Frame, reply: Reply) -> None:
        """Answer a `health` frame without blocking the channel thread on the VITON ping."""
        t0 = time.perf_counter()
        try:
            fut = self.viton.submit(Frame(Kind.HEALTH, f"health:{new_request_id()}"), VITON_PING_TIMEOUT_S)
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
        return {"endpoint": self.viton.info.endpoint, "reachable": answer.kind == Kind.HEALTH,
                "ok": answer.kind == Kind.HEALTH and answer.meta.get("status") == "ok",
                "answer": answer.kind, "rtt_ms": round((time.perf_counter() - t0) * 1000.0, 3),
                **({"meta": answer.meta} if answer.meta else {})}

    def viton_status(self) -> dict[str, Any]:
        """Ask the VITON service for its health (blocks up to VITON_PING_TIMEOUT_S: for the HTTP thread only)."""
        t0 = time.perf_counter()
        fut: Future[Frame] = Future()
        try:
            fut.set_result(self.viton.request(Frame(Kind.HEALTH, f"health:{new_request_id()}"), VITON_PING_TIMEOUT_S))
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
            "status": "ok" if viton.get("ok") else "degraded",
            "component": "node2.gateway",
            "channels": [{"backend": c.backend, "endpoint": c.endpoint, "reason": c.reason} for c in self.channels],
            "viton": viton,
            "viton_in_flight": in_flight,
            "garment_cache": self.cache.stats(),
        }
