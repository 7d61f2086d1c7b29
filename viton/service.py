"""The try-on service: `python -m viton.service`.

Long-running; the engine (viton.engine in env_config.json) is built once at start. One zmq
ROUTER socket bound at `transport.endpoints.viton_bind_endpoint(cfg)` speaks the gateway ->
VITON protocol of docs/transport.md:

    tryon   -> result (tensor image, meta timings_ms/engine/device) or error (meta code/message)
    ping    -> pong (meta = health)          health -> health (meta = health)
    other   -> error code unknown_kind;  undecodable -> error code malformed_frame

Concurrency: the socket thread decodes and validates every request at the boundary and
answers ping/health itself at once; valid try-ons go to ONE worker thread through a bounded
queue (QUEUE_SIZE; beyond it the reply is error code "busy"). The worker hands its replies back
over an inproc socket, so only the socket thread touches the ROUTER. Every request gets a reply,
and no bad frame stops the service.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from mirror import load_config, notify_ready, request_context, setup_logging
from mirror.lifecycle import install_stop_handlers
from transport.endpoints import viton_bind_endpoint
from transport.errors import FrameError, FrameTooLarge
from transport.frames import Frame, decode, decode_header, encode, error_frame
from viton import make_engine
from viton.checks import check_garment, check_person
from viton.engine import Engine, GarmentData, PersonData
from viton.errors import InvalidInput, VitonError

_log = logging.getLogger("viton.service")

QUEUE_SIZE = 4                  # try-ons waiting for the worker before "busy"
POLL_INTERVAL_MS = 200          # how often the socket loop looks at the stop flag
LINGER_MS = 0                   # drop unsent replies at close (the gateway times out on its own)
WORKER_JOIN_TIMEOUT_S = 5.0
PERSON_TENSORS = ("person", "parse", "keypoints", "pose_render")
GARMENT_TENSORS = ("garment_image", "garment_mask", "garment_landmarks")
_STOP = object()


def frame_to_inputs(frame: Frame) -> tuple[PersonData, GarmentData]:
    """Build and validate engine inputs from a "tryon" frame. Raises InvalidInput naming the problem."""
    t = frame.tensors
    missing = [n for n in (*PERSON_TENSORS, *GARMENT_TENSORS) if n not in t]
    if missing:
        raise InvalidInput(f"tryon request lacks tensor(s) {', '.join(missing)}; "
                           f"expected {', '.join((*PERSON_TENSORS, *GARMENT_TENSORS))} (+ optional person_mask)")
    kind = frame.meta.get("garment_kind", "tshirt")
    if not isinstance(kind, str):
        raise InvalidInput(f"meta garment_kind must be a string; got {kind!r:.40}")
    person = PersonData(image=t["person"], parse=t["parse"], keypoints=t["keypoints"],
                        pose_render=t["pose_render"], person_mask=t.get("person_mask"))
    garment = GarmentData(image=t["garment_image"], mask=t["garment_mask"], landmarks=t["garment_landmarks"],
                          kind=kind)
    check_person(person)
    check_garment(garment)
    return person, garment


def _request_id(parts: list[Any]) -> str:
    try:
        return str(decode_header(parts[0])["id"])
    except Exception:  # noqa: BLE001 - best effort: an error reply with no id still reaches the sender
        return ""


class TryOnService:
    """The ROUTER loop + one engine worker. `serve(stop)` blocks until `stop` is set."""

    def __init__(self, engine: Engine, endpoint: str, max_bytes: int, context: zmq.Context | None = None) -> None:
        self.engine = engine
        self.endpoint = endpoint
        self.max_bytes = max_bytes
        self.ctx = context or zmq.Context.instance()
        self._jobs: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_SIZE)
        self._inproc = f"inproc://viton-replies-{id(self)}"
        self._started = time.monotonic()
        self._busy = False
        self.served = 0
        self.failed = 0
        self.bound = threading.Event()

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "engine": self.engine.name, "device": self.engine.device,
                "busy": self._busy, "queued": self._jobs.qsize(), "served": self.served,
                "failed": self.failed, "uptime_s": round(time.monotonic() - self._started, 3)}

    def serve(self, stop: threading.Event) -> None:
        if self.endpoint.startswith("ipc://"):
            Path(self.endpoint[len("ipc://"):]).parent.mkdir(parents=True, exist_ok=True)
        router = self.ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, LINGER_MS)
        replies = self.ctx.socket(zmq.PULL)
        replies.bind(self._inproc)
        try:
            router.bind(self.endpoint)
        except zmq.ZMQError:
            router.close()
            replies.close()
            raise
        worker = threading.Thread(target=self._work, name="viton-worker", daemon=True)
        worker.start()
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(replies, zmq.POLLIN)
        self.bound.set()
        try:
            while not stop.is_set():
                events = dict(poller.poll(POLL_INTERVAL_MS))
                if replies in events:
                    router.send_multipart(replies.recv_multipart(copy=False), copy=False)
                if router in events:
                    msg = router.recv_multipart(copy=False)
                    reply = self._on_message(msg[0], [m.buffer for m in msg[1:]])
                    if reply is not None:
                        router.send_multipart([msg[0], *encode(reply)], copy=False)
        finally:
            self._jobs.put(_STOP)
            worker.join(WORKER_JOIN_TIMEOUT_S)
            router.close()
            replies.close()

    def _on_message(self, identity: Any, parts: list[Any]) -> Frame | None:
        """Reply now (health, errors) or queue the try-on (returns None)."""
        try:
            frame = decode(parts, max_bytes=self.max_bytes)
        except FrameTooLarge as exc:
            return error_frame(_request_id(parts), "frame_too_large", str(exc))
        except FrameError as exc:
            return error_frame(_request_id(parts), "malformed_frame", str(exc))
        except Exception as exc:  # noqa: BLE001 - no message may take the router thread down
            _log.warning("undecodable frame (%s: %s)", type(exc).__name__, exc)
            return error_frame(_request_id(parts), "malformed_frame", f"{type(exc).__name__}: {exc}")
        if frame.kind == "ping":
            return Frame("pong", frame.request_id, meta=self.health())
        if frame.kind == "health":
            return Frame("health", frame.request_id, meta=self.health())
        if frame.kind != "tryon":
            return error_frame(frame.request_id, "unknown_kind",
                               f"request kind {frame.kind!r:.40} is not served here; use tryon, ping or health")
        try:
            inputs = frame_to_inputs(frame)
        except VitonError as exc:
            self.failed += 1
            return error_frame(frame.request_id, exc.code, str(exc))
        try:
            self._jobs.put_nowait((identity, frame.request_id, inputs, time.perf_counter()))
        except queue.Full:
            return error_frame(frame.request_id, "busy",
                               f"{QUEUE_SIZE} try-ons are already waiting; retry later")
        return None

    def _work(self) -> None:
        out = self.ctx.socket(zmq.PUSH)
        out.connect(self._inproc)
        try:
            while True:
                job = self._jobs.get()
                if job is _STOP:
                    return
                identity, rid, (person, garment), t_in = job
                with request_context(rid):
                    reply = self._run(rid, person, garment, t_in)
                out.send_multipart([identity, *encode(reply)], copy=False)
        finally:
            out.close(linger=LINGER_MS)

    def _run(self, rid: str, person: PersonData, garment: GarmentData, t_in: float) -> Frame:
        self._busy = True
        t0 = time.perf_counter()
        try:
            result = self.engine.try_on(person, garment)
        except VitonError as exc:
            self.failed += 1
            _log.warning("try-on rejected: %s", exc)
            return error_frame(rid, exc.code, str(exc))
        except MemoryError as exc:
            self.failed += 1
            _log.error("out of memory in the engine: %s", exc)
            return error_frame(rid, "out_of_memory", f"the engine ran out of memory: {exc}")
        except Exception as exc:  # the service must survive any engine failure and say so
            self.failed += 1
            _log.exception("engine failed")
            return error_frame(rid, "engine_failed", f"{type(exc).__name__}: {exc}")
        finally:
            self._busy = False
        timings = {f"engine_{k}": float(v) for k, v in result.timings_ms.items()}
        timings["queue_ms"] = round((t0 - t_in) * 1000.0, 3)
        timings["viton_ms"] = round((time.perf_counter() - t_in) * 1000.0, 3)
        self.served += 1
        image = np.ascontiguousarray(result.image)
        return Frame("result", rid, meta={"timings_ms": timings, "engine": self.engine.name,
                                          "device": self.engine.device}, tensors={"image": image})


def main() -> int:
    setup_logging("viton.service")
    cfg = load_config()
    vt = cfg["viton"]
    ckpt = cfg.path(vt["checkpoint_dir"]) if vt.get("checkpoint_dir") else None
    try:
        engine = make_engine(vt["engine"], device=vt.get("device", "auto"), checkpoint_dir=ckpt)
    except Exception as exc:  # no fallback engine: refuse to start, and say why
        _log.error("cannot start the %r try-on engine: %s: %s", vt["engine"], type(exc).__name__, exc)
        return 1
    endpoint = viton_bind_endpoint(cfg)
    max_bytes = int(cfg["transport"]["max_message_mb"]) * 1024 * 1024
    service = TryOnService(engine, endpoint, max_bytes)
    stop = install_stop_handlers()
    thread = threading.Thread(target=service.serve, args=(stop,), name="viton-router")
    thread.start()
    while not service.bound.wait(0.1):
        if not thread.is_alive():
            _log.error("could not bind %s", endpoint)
            return 1
    notify_ready("viton.service", listen=endpoint, engine=engine.name, device=engine.device)
    while thread.is_alive():  # join in slices: the main thread must stay free for SIGTERM
        thread.join(POLL_INTERVAL_MS / 1000.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
