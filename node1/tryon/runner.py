"""The one try-on request path of node 1, shared by the web app, the CLI and the benchmarks:

    photo ─▶ fit to WORK_MAX_SIDE ─▶ preprocess (pose, parsing) on the preprocessing device
          ─▶ the person tensors the engine reads (viton.contract) ─▶ a Node2Link ─▶ result image

Runners differ only in the `Node2Link` (node1.tryon.links): over the transport to node 2's gateway
(the distributed deployment), or to a VITON service object in this process (no wire). Every
component's failure is translated here, at the boundary, into node1.tryon.errors.

Progress (ProgressFn): "pose" and "parsing" fire the moment each finishes on the device; "transfer"
and "tryon" fire when node 2's answer arrives, since node 1 only sees the round trip: "tryon" is
VITON's own time (queue + engine, measured by the service) and "transfer" the rest of the round
trip (the tensors and the result on the wire, the gateway).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import cv2
import numpy as np

from node1.tryon.catalog import WebCatalog
from node1.tryon.errors import BadRequest, LegsNotInView, Node2Unavailable, NoPersonInPhoto, TryOnFailed, TryOnTimeout
from node1.tryon.interface import ProgressFn, RunnerHealth, TryOnResult
from node1.tryon.preprocess import Preprocessed, preprocess
from transport import Frame, PeerUnavailable, RequestTimeout, TransportError
from viton import contract
from viton.contract import LEGS_CODES, NO_PERSON_CODES, TIMEOUT_CODES, UNAVAILABLE_CODES, Kind

WORK_MAX_SIDE = 1024          # photos are tried on at most this size (VITON-HD's 1024x768 scale)
MIN_TIMEOUT_S = 0.1           # the node-2 leg always gets at least this long
PARSING_MODEL = "face_detection_short_range (parsing)"


def loaded_models() -> dict[str, list[str]]:
    """The preprocessing models whose weights are in this process's memory, read from the loaders'
    caches (nothing is loaded here): {"portable": [...], "cpu": [...]}. "portable" are the aten-only
    modules gvirtus registers on node 2's device; "cpu" the oneDNN-lowered ones the local CPU runs."""
    from node1.parsing import runner as parsing_runner
    from node1.pose import runners as pose_runners

    files = [name.removesuffix(".tflite") for name, _size in pose_runners.MODEL_INPUTS.values()]
    out: dict[str, list[str]] = {"portable": [], "cpu": []}
    for cpu_fast, key in ((False, "portable"), (True, "cpu")):
        if pose_runners.loaded_stage_sets(cpu_fast):
            out[key].extend(files)
    if parsing_runner.cpu_module.cache_info().currsize:
        out["portable"].append(PARSING_MODEL)
    if parsing_runner.cpu_fast_module.cache_info().currsize:
        out["cpu"].append(PARSING_MODEL)
    return out


def load_models(cpu_fast: bool) -> None:
    """Load the preprocessing models now (not on the first try-on): the portable set for a remote
    device (what gvirtus registers), the CPU-lowered set for the local CPU."""
    from node1.parsing import runner as parsing_runner
    from node1.pose import runners as pose_runners

    pose_runners.stage_module("pose_detector", cpu_fast)
    parsing_runner.parsing_module(cpu_fast)   # the very module preprocess runs (its cache is keyed on the call)


class RunnerCounters:
    """What the runner did, counted where it happens (monotonic; thread-safe). node1.web's /metrics
    reads it: `gvirtus_calls` (remote CUDA calls made by preprocessing, counted by gvirtus.client in
    the calling thread) and `preprocess_fallbacks` by reason (node1.tryon.fallback.FALLBACK_REASONS)."""

    def __init__(self) -> None:
        from node1.tryon.fallback import FALLBACK_REASONS

        self._lock = threading.Lock()
        self.gvirtus_calls = 0
        self.preprocess_fallbacks: dict[str, int] = dict.fromkeys(FALLBACK_REASONS, 0)

    def add(self, gvirtus_calls: int, fallback_reason: str | None) -> None:
        with self._lock:
            self.gvirtus_calls += gvirtus_calls
            if fallback_reason is not None:
                self.preprocess_fallbacks[fallback_reason] = self.preprocess_fallbacks.get(fallback_reason, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"gvirtus_calls": self.gvirtus_calls, "preprocess_fallbacks": dict(self.preprocess_fallbacks)}

T = TypeVar("T")


class Node2Link(Protocol):
    """Where the try-on message goes (node1.tryon.links): `tryon` returns the `result` or `error`
    Frame and raises transport errors (PeerUnavailable, RequestTimeout, TransportError)."""

    @property
    def transport(self) -> str: ...

    def tryon(self, person: dict[str, np.ndarray], garment: Any, timeout_s: float, *,
              request_id: str | None = None, result: Mapping[str, object] | None = None) -> Frame: ...
    # request_id: a pool's retry reuses the request's id (None: a new one); result: the meta keys of
    # viton.contract.result_request (None: raw pixels back).

    def health(self, timeout_s: float) -> Frame: ...


def fit_for_tryon(photo: np.ndarray, max_side: int = WORK_MAX_SIDE) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> the same photo scaled down (area filter) so max(H, W) <= max_side."""
    h, w = photo.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return np.ascontiguousarray(photo)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(photo, size, interpolation=cv2.INTER_AREA)


def person_tensors(pre: Preprocessed, reads: tuple[str, ...], photo_jpeg: bytes | None = None) -> dict[str, np.ndarray]:
    """The person tensors of the try-on message: exactly those the engine reads (viton.contract), the photo
    as `photo_jpeg` (the file it was decoded from, unchanged) when given. Raises TryOnFailed when the engine
    reads the person mask and preprocessing left it on the device (preprocess(..., with_mask=False))."""
    available = {"person": pre.image, "parse": pre.parse, "keypoints": pre.body25, "person_mask": pre.person_mask}
    if "person_mask" in reads and pre.person_mask is None:
        raise TryOnFailed("the engine reads 'person_mask', which preprocessing left on the device")
    dtypes = {"parse": np.uint8, "keypoints": np.float32, "person_mask": np.uint8}
    out = {name: np.ascontiguousarray(available[name], dtype=dtypes.get(name)) for name in reads}
    if photo_jpeg is not None and out.pop("person", None) is not None:
        out[contract.PERSON_AS_JPEG] = np.frombuffer(photo_jpeg, dtype=np.uint8)
    return out


def run_preprocess(device: Any, photo: np.ndarray, on_stage: Any = None, *, with_mask: bool = True) -> Preprocessed:
    """Pose + parsing on `device` (a node1.tryon.fallback.FallbackDevice: remote first; or a local torch device);
    the person mask comes back only `with_mask` (node1.tryon.preprocess).

    Raises:
        NoPersonInPhoto: nobody (or too little of a body) in the photo.
        BadRequest: the photo cannot be used (e.g. under 128 px on its short side).
    """
    return run_on_device(device, functools.partial(preprocess, with_mask=with_mask, on_stage=on_stage), photo)


def run_on_device(device: Any, fn: Callable[..., T], photo: np.ndarray) -> T:
    """`fn(photo, device=...)` on the preprocessing device (remote first through a FallbackDevice), with
    the pose errors translated (the still path's preprocess, the live path's per-frame preprocessing).

    Raises:
        NoPersonInPhoto: nobody (or too little of a body) in the photo.
        BadRequest: the photo cannot be used (e.g. under 128 px on its short side).
    """
    from node1.pose import InvalidImage, NoPersonDetected
    from node1.tryon.fallback import FallbackDevice

    try:
        if isinstance(device, FallbackDevice):
            return device.run(fn, photo)
        return fn(photo, device=device)
    except NoPersonDetected as exc:
        raise NoPersonInPhoto(f"no person found in the photo ({exc}): stand facing the camera with your "
                              "head, shoulders and upper body in the picture, and try again") from exc
    except InvalidImage as exc:
        raise BadRequest(f"the photo cannot be used: {exc}") from exc


def error_from_reply(meta: dict[str, Any]) -> Exception:
    """node 2's `error` reply (viton.contract.ErrorCode) -> the web contract's typed error."""
    code, message = str(meta.get("code", "unknown")), str(meta.get("message", ""))
    if code in LEGS_CODES:
        return LegsNotInView(f"{LegsNotInView.default_message} ({message})")
    if code in NO_PERSON_CODES:
        return NoPersonInPhoto(f"the photo does not show enough of the body for this garment ({message}); "
                               "include both shoulders and the upper body")
    if code in UNAVAILABLE_CODES:
        return Node2Unavailable(f"the try-on service on node 2 is unavailable ({code}: {message})")
    if code in TIMEOUT_CODES:
        return TryOnTimeout(f"the try-on service on node 2 took too long ({message})")
    return TryOnFailed(f"node 2 could not complete the try-on ({code}: {message})")


@dataclass(frozen=True)
class Dressed:
    """The node-2 leg's outcome: image (H, W, 3) uint8 RGB, or None with `jpeg` (the JPEG file node 2
    made, when asked for one); transfer_ms (the round trip less VITON's time), tryon_ms (VITON's
    queue + engine + encode), nbytes (person tensors + result on the wire)."""

    image: np.ndarray | None
    transfer_ms: float
    tryon_ms: float
    nbytes: int
    jpeg: bytes | None = None


class Runner:
    """A TryOnRunner (node1.tryon.interface). Thread-safe: the link multiplexes requests, and
    preprocessing calls are serialised (the models keep per-call buffers; 2 CPU cores).

    Args:
        catalog: the garments.
        device: the preprocessing device: a FallbackDevice (remote first) or a torch device name.
        link: where the try-on message goes (node1.tryon.links).
        reads: the person tensors the configured engine reads (viton.contract.reads_of).
        timeout_s: the whole try-on's limit (limits.request_timeout_s).
        health_fn: the runner's part of GET /health (the deployment knows what to probe).
        pre_lock: the lock serialising preprocessing (a pool's members share one: one set of models).
        counters: where to count (a pool's members share one RunnerCounters).
        result_jpeg_quality: `run` asks node 2 for the result as a JPEG file of this quality
            (TryOnResult.jpeg: the web app's; ~15x fewer bytes back) instead of raw pixels (None: the CLI).
    """

    def __init__(self, catalog: WebCatalog, device: Any, link: Node2Link, reads: tuple[str, ...], *,
                 timeout_s: float, health_fn: Any, pre_lock: threading.Lock | None = None,
                 counters: RunnerCounters | None = None, result_jpeg_quality: int | None = None) -> None:
        self.catalog = catalog
        self.device = device
        self.link = link
        self.reads = reads
        self.timeout_s = timeout_s
        self._health_fn = health_fn
        self._pre_lock = pre_lock or threading.Lock()
        self.counters = counters or RunnerCounters()
        self.result = contract.result_request("jpeg", result_jpeg_quality) if result_jpeg_quality else {}

    def run(self, photo: np.ndarray, garment_id: str, progress: ProgressFn, *, timeout_s: float | None = None,
            request_id: str | None = None, source: bytes | None = None) -> TryOnResult:
        """One try-on (TryOnRunner.run); `timeout_s` (default: the runner's) and `request_id` (default: a new
        one on the link) let a pool retry a request on another node 2 with what is left of its time. `source`:
        the JPEG file `photo` was decoded from, unchanged (TryOnRunner.run): it travels instead of the pixels
        unless the photo had to be scaled down."""
        garment = self.catalog.garment(garment_id)  # UnknownGarment
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        work = fit_for_tryon(photo)
        photo_jpeg = source if work.shape == photo.shape else None   # scaled down: the file no longer matches
        sent: set[str] = set()

        def on_stage(stage: str, ms: float) -> None:  # a fallback rerun reports its stages again: once each
            if stage not in sent:
                sent.add(stage)
                progress(stage, ms)

        import gvirtus

        with self._pre_lock:
            calls0 = gvirtus.calls_made_by_this_thread()
            try:
                pre = run_preprocess(self.device, work, on_stage, with_mask="person_mask" in self.reads)
            finally:
                calls = gvirtus.calls_made_by_this_thread() - calls0
                served_by = getattr(self.device, "last_served_by", None)
                fallback = getattr(self.device, "last_fallback_reason", None) if served_by != "remote" else None
                self.counters.add(calls, fallback)
        dressed = self.dress(pre, garment, deadline - time.monotonic(), request_id=request_id, result=self.result,
                             photo_jpeg=photo_jpeg)
        timings = {"pose": float(pre.timings_ms.get("pose", 0.0)), "parsing": float(pre.timings_ms.get("parse", 0.0)),
                   "transfer": dressed.transfer_ms, "tryon": dressed.tryon_ms}
        progress("transfer", timings["transfer"])
        progress("tryon", timings["tryon"])
        device = str(pre.device) if fallback is None else f"{pre.device} (local fallback)"
        return TryOnResult(image=dressed.image, timings_ms=timings, device=device,
                           transport=self.link.transport, gvirtus_calls=calls, transport_bytes=dressed.nbytes,
                           preprocess_fallback=fallback, jpeg=dressed.jpeg)

    def preprocess_frame(self, fn: Callable[..., T], frame: np.ndarray) -> T:
        """`fn(frame, device=...)` on this runner's preprocessing device, serialised with the stills'
        preprocessing (the live mirror's per-frame pose and parsing; errors as run_on_device's)."""
        with self._pre_lock:
            return run_on_device(self.device, fn, frame)

    def dress(self, pre: Preprocessed, garment: Any, timeout_s: float, *, request_id: str | None = None,
              result: Mapping[str, object] | None = None, photo_jpeg: bytes | None = None) -> Dressed:
        """The node-2 leg of a try-on: the person tensors the engine reads over the link, the result back.

        Args:
            pre: the preprocessed photo or video frame.
            garment: a catalog garment (self.catalog.garment(id)).
            timeout_s: the time left for this leg (at least MIN_TIMEOUT_S is given).
            request_id: the try-on message's id (default: a new one).
            result: viton.contract.result_request keys (default: raw pixels back).
            photo_jpeg: the JPEG file pre.image was decoded from, unchanged: sent instead of the pixels.
        Raises:
            TryOnTimeout, Node2Unavailable, NoPersonInPhoto, TryOnFailed (node 2's error codes mapped).
        """
        tensors = person_tensors(pre, self.reads, photo_jpeg)
        t0 = time.perf_counter()
        try:
            limit = max(MIN_TIMEOUT_S, timeout_s)
            reply = self.link.tryon(tensors, garment, limit, request_id=request_id, result=result)
        except RequestTimeout as exc:
            raise TryOnTimeout(f"node 2 did not answer within {max(MIN_TIMEOUT_S, timeout_s):.3g} s ({exc})") from exc
        except PeerUnavailable as exc:
            raise Node2Unavailable(f"node 2's gateway cannot be reached ({exc})") from exc
        except TransportError as exc:
            raise Node2Unavailable(f"the transport to node 2 failed: {type(exc).__name__}: {exc}") from exc
        round_trip_ms = (time.perf_counter() - t0) * 1000.0
        if reply.kind == Kind.ERROR:
            raise error_from_reply(reply.meta)
        fmt, _ = contract.check_result_request(result or {})
        name = contract.RESULT_TENSOR[fmt]
        if reply.kind != Kind.RESULT or name not in reply.tensors:
            raise TryOnFailed(f"node 2 answered with an unexpected {reply.kind!r} message (no {name!r} tensor)")
        viton_ms = {k: float(v) for k, v in dict(reply.meta.get("timings_ms", {})).items()
                    if isinstance(v, int | float)}
        tryon_ms = viton_ms.get("viton_ms", 0.0)
        out = reply.tensors[name]
        try:
            contract.check_tensors({name: out}, contract.RESULT_TENSORS, (name,), what="node 2's result")
        except contract.ContractError as exc:
            raise TryOnFailed(str(exc)) from exc
        nbytes = sum(int(t.nbytes) for t in tensors.values()) + int(out.nbytes)
        transfer_ms = max(0.0, round_trip_ms - tryon_ms)
        if fmt == "jpeg":
            return Dressed(image=None, jpeg=bytes(out), transfer_ms=transfer_ms, tryon_ms=tryon_ms, nbytes=nbytes)
        return Dressed(image=np.array(out), transfer_ms=transfer_ms, tryon_ms=tryon_ms, nbytes=nbytes)

    def health(self) -> RunnerHealth:
        health: RunnerHealth = self._health_fn()
        return health
