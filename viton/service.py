"""The try-on service: `python -m viton.service`.

Long-running; the engine (viton.engine in env_config.json) is built once at start. It serves the
gateway -> VITON half of the try-on contract (viton/contract.py) on transport's server channel
(transport.TcpServer: zmq ROUTER, heartbeats, malformed-frame replies, CurveZMQ when configured)
bound at `transport.viton_bind_endpoint(cfg)`:

    tryon   -> result (tensor image; meta timings_ms, engine, device) or error (meta code, message)
    health  -> health (meta = the service's health document)
    ping    -> pong (answered by the channel itself, even while a try-on runs)
    other   -> error code unknown_kind

Concurrency: `handle` runs on the channel's I/O thread; it validates every request against the
contract at once and queues valid try-ons for ONE engine thread through a bounded queue
(QUEUE_SIZE; beyond it the reply is error code "busy"). The engine thread replies itself
(transport's `reply` may be called from any thread). Every request gets a reply, and no bad
request stops the service.
"""

from __future__ import annotations

import io
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mirror import load_config, notify_ready, request_context, setup_logging
from mirror.lifecycle import install_stop_handlers, run_until_signal
from transport import Frame, TcpServer, TransportError, error_frame, viton_bind_endpoint
from transport.auto import max_message_bytes, server_curve_keys
from viton import contract, engine_from_config
from viton.checks import check_garment
from viton.contract import ContractError, ErrorCode, Kind
from viton.engine import Engine, GarmentData, PersonData
from viton.errors import VitonError

_log = logging.getLogger("viton.service")

QUEUE_SIZE = 4                  # try-ons waiting for the engine thread before "busy"
WORKER_JOIN_TIMEOUT_S = 5.0
_GARMENT_SPECS = {contract.FORWARDED_GARMENT_NAMES[k]: v for k, v in contract.GARMENT_TENSORS.items()}

Reply = Any  # transport's Callable[[Frame], None]


@dataclass
class _Job:
    request_id: str
    person: PersonData
    garment: GarmentData
    reply: Reply
    queued_at: float
    result_format: str = "raw"
    jpeg_quality: int = 0           # with result_format "jpeg" (the contract requires it there)


def frame_to_inputs(frame: Frame, reads: tuple[str, ...]) -> tuple[PersonData, GarmentData]:
    """Build and validate engine inputs from a gateway `tryon` frame for an engine reading `reads`.

    Raises:
        ContractError: code missing_tensor naming an absent tensor the engine reads, else bad_input
            naming the tensor or meta key, what was expected and what arrived.
        viton.errors.InvalidInput: the garment is unusable (e.g. an empty mask).
    """
    t = frame.tensors
    person_part = {k: v for k, v in t.items() if k not in _GARMENT_SPECS}
    contract.check_person(person_part, reads, code=ErrorCode.BAD_INPUT)
    contract.check_tensors({k: v for k, v in t.items() if k in _GARMENT_SPECS}, _GARMENT_SPECS,
                           tuple(_GARMENT_SPECS), what="tryon garment", code=ErrorCode.BAD_INPUT)
    kind = frame.meta.get("garment_kind", "tshirt")
    if not isinstance(kind, str) or not kind:
        raise ContractError(f"meta garment_kind must be a non-empty string; got {kind!r:.40}", ErrorCode.BAD_INPUT)
    photo = t["person"] if "person" in t else decode_person_jpeg(t[contract.PERSON_AS_JPEG], t["parse"].shape)
    person = PersonData(image=photo, parse=t["parse"], keypoints=t["keypoints"], person_mask=t.get("person_mask"))
    key = frame.meta.get("garment_id", "")   # the gateway verified it against the garment's bytes
    garment = GarmentData(image=t["garment_image"], mask=t["garment_mask"], landmarks=t["garment_landmarks"],
                          kind=kind, key=key if _is_content_id(key) else "")
    check_garment(garment)
    return person, garment


def decode_person_jpeg(data: np.ndarray, hw: tuple[int, ...]) -> np.ndarray:
    """The shopper's JPEG file (n,) uint8 -> (H, W, 3) uint8 RGB, decoded as node 1's web app decodes it
    (PIL, then RGB), for a photo of size hw = (H, W) (the parse map's). Raises ContractError (bad_input)
    naming person_jpeg: not a JPEG, damaged, or another size (checked on the header, before decoding)."""
    name = contract.PERSON_AS_JPEG
    try:
        with Image.open(io.BytesIO(data.tobytes()), formats=["JPEG"]) as img:
            if (img.height, img.width) != tuple(hw):
                raise ContractError(f"tensor {name!r} is a {img.width}x{img.height} JPEG; the parse map is "
                                    f"{hw[1]}x{hw[0]}", ErrorCode.BAD_INPUT)
            if img.mode != "RGB":
                raise ContractError(f"tensor {name!r} is a {img.mode} JPEG; only RGB (YCbCr) photos travel as "
                                    "JPEG (send 'person' instead)", ErrorCode.BAD_INPUT)
            rgb = np.asarray(img, dtype=np.uint8)
    except ContractError:
        raise
    except (OSError, SyntaxError, ValueError, Image.UnidentifiedImageError) as exc:
        raise ContractError(f"tensor {name!r} is not a JPEG file that decodes ({type(exc).__name__}: {exc})",
                            ErrorCode.BAD_INPUT) from exc
    return np.ascontiguousarray(rgb)


def _is_content_id(value: object) -> bool:
    try:
        contract.check_garment_id(value)
    except ContractError:
        return False
    return True


class TryOnService:
    """The contract's handler plus one engine thread. `start()` then `handle` on a server channel."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._started = time.monotonic()
        self._busy = False
        self._worker: threading.Thread | None = None
        self.served = 0
        self.failed = 0

    def health(self) -> dict[str, Any]:
        alive = self._worker is not None and self._worker.is_alive()
        return {"status": "ok" if alive else "degraded", "engine": self.engine.name, "device": self.engine.device,
                "reads": list(self.engine.reads), "contract_version": contract.CONTRACT_VERSION,
                **({"warp_memo": memo.stats.as_dict()} if (memo := getattr(self.engine, "memo", None)) else {}),
                "busy": self._busy, "queued": self._jobs.qsize(), "served": self.served,
                "failed": self.failed, "uptime_s": round(time.monotonic() - self._started, 3)}

    def start(self) -> None:
        self._worker = threading.Thread(target=self._work, name="viton-engine", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        if self._worker is None:
            return
        self._jobs.put(None)
        self._worker.join(WORKER_JOIN_TIMEOUT_S)

    # -- I/O thread: never blocks ----------------------------------------------------------------
    def handle(self, frame: Frame, reply: Reply) -> None:
        if frame.kind == Kind.HEALTH:
            reply(Frame(Kind.HEALTH, frame.request_id, meta=self.health()))
        elif frame.kind == Kind.TRYON:
            answer = self._queue(frame, reply)
            if answer is not None:
                reply(answer)
        else:
            reply(error_frame(frame.request_id, ErrorCode.UNKNOWN_KIND,
                              f"request kind {frame.kind!r:.40} is not served here; use tryon, ping or health"))

    def _queue(self, frame: Frame, reply: Reply) -> Frame | None:
        try:
            person, garment = frame_to_inputs(frame, self.engine.reads)
            fmt, quality = contract.check_result_request(frame.meta, code=ErrorCode.BAD_INPUT)
        except ContractError as exc:
            self.failed += 1
            return error_frame(frame.request_id, exc.code, str(exc))
        except VitonError as exc:
            self.failed += 1
            return error_frame(frame.request_id, exc.code, str(exc))
        try:
            self._jobs.put_nowait(_Job(frame.request_id, person, garment, reply, time.perf_counter(), fmt,
                                       quality or 0))
        except queue.Full:
            return error_frame(frame.request_id, ErrorCode.BUSY, f"{QUEUE_SIZE} try-ons are already waiting; "
                               "retry later")
        return None

    # -- engine thread -------------------------------------------------------------------------
    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            with request_context(job.request_id):
                answer = self._run(job)
            try:
                job.reply(answer)
            except TransportError as exc:
                _log.warning("could not reply to try-on %r: %s", job.request_id, exc)

    def _run(self, job: _Job) -> Frame:
        rid = job.request_id
        self._busy = True
        t0 = time.perf_counter()
        try:
            result = self.engine.try_on(job.person, job.garment)
        except VitonError as exc:
            self.failed += 1
            _log.warning("try-on rejected: %s", exc)
            return error_frame(rid, exc.code, str(exc))
        except MemoryError as exc:
            self.failed += 1
            _log.error("out of memory in the engine: %s", exc)
            return error_frame(rid, ErrorCode.OUT_OF_MEMORY, f"the engine ran out of memory: {exc}")
        except Exception as exc:  # the service must survive any engine failure and say so
            self.failed += 1
            _log.exception("engine failed")
            return error_frame(rid, ErrorCode.ENGINE_FAILED, f"{type(exc).__name__}: {exc}")
        finally:
            self._busy = False
        timings = {f"engine_{k}": float(v) for k, v in result.timings_ms.items()}
        image = np.ascontiguousarray(result.image)
        if job.result_format == "jpeg":
            t_enc = time.perf_counter()
            out = {"image_jpeg": encode_jpeg(image, job.jpeg_quality)}
            timings["encode_ms"] = round((time.perf_counter() - t_enc) * 1000.0, 3)
        else:
            out = {"image": image}
        timings["queue_ms"] = round((t0 - job.queued_at) * 1000.0, 3)
        timings["viton_ms"] = round((time.perf_counter() - job.queued_at) * 1000.0, 3)
        self.served += 1
        return Frame(Kind.RESULT, rid, meta={"timings_ms": timings, "engine": self.engine.name,
                                             "device": self.engine.device}, tensors=out)


def encode_jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> the JPEG file's bytes as a (n,) uint8 array (PIL, baseline, 4:2:0: the
    same encoder and settings node 1's web app uses, so the bytes are those it would have made)."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def serve(service: TryOnService, endpoint: str, *, max_bytes: int, curve: Any = None) -> TcpServer:
    """Start the engine thread and a server channel on `endpoint` handing requests to `service`.
    Raises transport.TransportError when the endpoint cannot be bound (the message says how to fix it)."""
    if endpoint.startswith("ipc://"):
        Path(endpoint[len("ipc://"):]).parent.mkdir(parents=True, exist_ok=True)
    server = TcpServer(endpoint, service.handle, max_message_bytes=max_bytes, curve=curve,
                       max_outstanding=QUEUE_SIZE + 64)
    service.start()
    try:
        server.start()
    except BaseException:
        service.stop()
        raise
    return server


def remove_ipc_file(endpoint: str) -> None:
    """An ipc:// endpoint leaves its socket file behind after close: remove it (no stale var/viton.sock)."""
    if endpoint.startswith("ipc://"):
        Path(endpoint[len("ipc://"):]).unlink(missing_ok=True)


def main() -> int:
    setup_logging("viton.service")
    cfg = load_config()
    try:
        engine = engine_from_config(cfg)
    except Exception as exc:  # no fallback engine: refuse to start, and say why
        _log.error("cannot start the %r try-on engine: %s: %s", cfg["viton"]["engine"], type(exc).__name__, exc)
        return 1
    stop = install_stop_handlers()
    endpoint = viton_bind_endpoint(cfg)
    service = TryOnService(engine)
    try:
        server = serve(service, endpoint, max_bytes=max_message_bytes(cfg), curve=server_curve_keys(cfg, endpoint))
    except TransportError as exc:
        _log.error("%s", exc)
        return 1
    try:
        notify_ready("viton.service", listen=server.info.endpoint, engine=engine.name, device=engine.device)
        run_until_signal(stop)
    finally:
        server.close()
        service.stop()
        remove_ipc_file(endpoint)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
