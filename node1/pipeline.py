"""The real try-on pipeline of a deployment: preprocess through gvirtus, tensors over the
transport to node 2's gateway, try-on in the VITON service.

    photo ─▶ fit to WORK_MAX_SIDE ─▶ pose + parsing (gvirtus remote device; local CPU fallback
    behind a circuit breaker) ─▶ TryOnClient (RDMA or TCP) ─▶ gateway ─▶ VITON ─▶ result image

`build_for_web(cfg)` is node1.web's default pipeline factory. Every failure of a component is
translated here, at the boundary, into the web contract's typed errors (node1.pipeline_api).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import cv2
import numpy as np

from mirror import Config
from node1.garment_catalog import WebCatalog, open_catalog
from node1.pipeline_api import (
    BadRequest,
    Node2Unavailable,
    NoPersonInPhoto,
    PipelineFailed,
    PipelineHealth,
    PipelineResult,
    PipelineTimeout,
    ProgressFn,
)
from node1.pose import FallbackDevice, InvalidImage, NoPersonDetected
from node1.preprocess import Preprocessed, preprocess

log = logging.getLogger("node1.pipeline")

WORK_MAX_SIDE = 1024          # photos are tried on at most this size (VITON-HD's 1024x768 scale)
HEALTH_CACHE_S = 2.0          # /health probes node 2 at most this often
HEALTH_PROBE_TIMEOUT_S = 1.0
REMOTE_CONNECT_TIMEOUT_S = 3.0
# Error codes of the gateway / VITON service that mean "the photo lacks a usable body".
NO_PERSON_CODES = frozenset({"no_pose"})
UNAVAILABLE_CODES = frozenset({"viton_unavailable", "busy"})
TIMEOUT_CODES = frozenset({"viton_timeout"})


def fit_for_tryon(photo: np.ndarray, max_side: int = WORK_MAX_SIDE) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> the same photo scaled down (area filter) so max(H, W) <= max_side."""
    h, w = photo.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return np.ascontiguousarray(photo)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(photo, size, interpolation=cv2.INTER_AREA)


def run_preprocess(device: FallbackDevice | str, photo: np.ndarray) -> Preprocessed:
    """Pose + parsing on `device` (a FallbackDevice: remote first; or a local torch device).

    Raises:
        NoPersonInPhoto: nobody (or too little of a body) in the photo.
        BadRequest: the photo cannot be used (e.g. under 128 px on its short side).
    """
    try:
        if isinstance(device, FallbackDevice):
            return device.run(preprocess, photo)
        return preprocess(photo, device=device)
    except NoPersonDetected as exc:
        raise NoPersonInPhoto(f"no person found in the photo ({exc}): stand facing the camera with your "
                              "head, shoulders and upper body in the picture, and try again") from exc
    except InvalidImage as exc:
        raise BadRequest(f"the photo cannot be used: {exc}") from exc


def person_tensors(pre: Preprocessed) -> dict[str, np.ndarray]:
    """The person half of a try-on request (transport's PERSON_TENSORS contract)."""
    return {
        "person": np.ascontiguousarray(pre.image),
        "parse": np.ascontiguousarray(pre.parse, dtype=np.uint8),
        "keypoints": np.ascontiguousarray(pre.body25, dtype=np.float32),
        "pose_render": np.ascontiguousarray(pre.pose_image),
        "person_mask": np.ascontiguousarray(pre.person_mask, dtype=np.float32),
    }


class DistributedPipeline:
    """TryOnPipeline over node 2. Thread-safe: the transport client multiplexes requests, and
    preprocessing calls are serialised (the models keep per-call buffers; 2 CPU cores)."""

    def __init__(self, cfg: Config, catalog: WebCatalog, client: Any, device: FallbackDevice) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self.client = client
        self.device = device
        self.timeout_s = float(cfg["limits"]["request_timeout_s"])
        self._pre_lock = threading.Lock()
        self._health_lock = threading.Lock()
        self._health: tuple[float, PipelineHealth] | None = None

    @property
    def transport(self) -> str:
        return str(self.client.channel.info.backend)

    def run(self, photo: np.ndarray, garment_id: str, progress: ProgressFn) -> PipelineResult:
        from transport import PeerUnavailable, RequestTimeout, TransportError

        garment = self.catalog.garment(garment_id)  # UnknownGarment
        deadline = time.monotonic() + self.timeout_s
        work = fit_for_tryon(photo)
        progress("pose")
        with self._pre_lock:
            pre = run_preprocess(self.device, work)
        progress("parsing")  # pose and parsing run as one preprocessing call on one device
        progress("transfer")
        tensors = person_tensors(pre)
        t0 = time.perf_counter()
        try:
            reply = self.client.tryon(tensors, garment, timeout_s=max(0.1, deadline - time.monotonic()))
        except RequestTimeout as exc:
            raise PipelineTimeout(f"node 2 did not answer within {self.timeout_s:g} s ({exc})") from exc
        except PeerUnavailable as exc:
            raise Node2Unavailable(f"node 2's gateway cannot be reached ({exc})") from exc
        except TransportError as exc:
            raise Node2Unavailable(f"the transport to node 2 failed: {type(exc).__name__}: {exc}") from exc
        round_trip_ms = (time.perf_counter() - t0) * 1000.0
        progress("tryon")
        if reply.kind == "error":
            raise self._error_from_reply(reply.meta)
        if reply.kind != "result" or "image" not in reply.tensors:
            raise PipelineFailed(f"node 2 answered with an unexpected {reply.kind!r} message")
        viton_ms = {k: float(v) for k, v in dict(reply.meta.get("timings_ms", {})).items()
                    if isinstance(v, int | float)}
        # node 2 reports viton_ms (queue + engine, inside the VITON service) and gateway_ms (around it);
        # the rest of the round trip is the transfer of the tensors and the result.
        tryon_ms = viton_ms.get("viton_ms", 0.0)
        timings = {
            "pose": float(pre.timings_ms.get("pose", 0.0)),
            "parsing": float(pre.timings_ms.get("parse", 0.0)),
            "transfer": max(0.0, round_trip_ms - tryon_ms),
            "tryon": tryon_ms,
        }
        nbytes = sum(int(t.nbytes) for t in tensors.values()) + int(reply.tensors["image"].nbytes)
        device = pre.device if self.device.last_served_by == "remote" else f"{pre.device} (local fallback)"
        return PipelineResult(image=np.array(reply.tensors["image"]), timings_ms=timings, device=device,
                              transport=self.transport, transport_bytes=nbytes)

    @staticmethod
    def _error_from_reply(meta: dict[str, Any]) -> Exception:
        code, message = str(meta.get("code", "unknown")), str(meta.get("message", ""))
        if code in NO_PERSON_CODES:
            return NoPersonInPhoto(f"the photo does not show enough of the body for this garment ({message}); "
                                   "include both shoulders and the upper body")
        if code in UNAVAILABLE_CODES:
            return Node2Unavailable(f"the try-on service on node 2 is unavailable ({code}: {message})")
        if code in TIMEOUT_CODES:
            return PipelineTimeout(f"the try-on service on node 2 took too long ({message})")
        return PipelineFailed(f"node 2 could not complete the try-on ({code}: {message})")

    def health(self) -> PipelineHealth:
        with self._health_lock:
            now = time.monotonic()
            if self._health is not None and now - self._health[0] < HEALTH_CACHE_S:
                return self._health[1]
            health = self._probe()
            self._health = (now, health)
            return health

    def _probe(self) -> PipelineHealth:
        details: dict[str, Any] = {"preprocess_breaker": self.device.breaker.state,
                                   "preprocess_last_served_by": self.device.last_served_by or "none yet",
                                   "transport_reason": self.client.channel.info.reason}
        reachable = False
        try:
            reply = self.client.health(timeout_s=HEALTH_PROBE_TIMEOUT_S)
            reachable = reply.kind != "error"
            details["node2"] = reply.meta
        except Exception as exc:  # noqa: BLE001 - health reports whatever went wrong
            details["node2_error"] = f"{type(exc).__name__}: {exc}"
        gpu = None
        remote = self.device._remote  # the live session, if any; health never opens one
        if remote is not None:
            try:
                props = remote.properties()
                total, free = int(props.get("total_memory", 0)), int(props.get("free_memory", 0))
                gpu = {"name": props.get("name"), "device_type": props.get("device_type"),
                       "memory_used_mb": round((total - free) / 2**20), "memory_total_mb": round(total / 2**20),
                       "temperature_c": props.get("temperature_c")}
            except Exception as exc:  # noqa: BLE001
                details["gvirtus_error"] = f"{type(exc).__name__}: {exc}"
        return PipelineHealth(models_loaded=["pose_detection", "pose_landmark_full", "face_detection_short_range",
                                             "parsing"],
                              transport=self.transport, node2_reachable=reachable, gpu=gpu, details=details)


def _remote_connector(cfg: Config) -> Any:
    def connect() -> Any:
        import gvirtus

        return gvirtus.connect_from_config(cfg, client_name="node1.pipeline", timeout_s=REMOTE_CONNECT_TIMEOUT_S)

    return connect


def build_for_web(cfg: Config) -> tuple[DistributedPipeline, WebCatalog]:
    """node1.web's pipeline factory: the catalog, a transport client to node 2, and the
    preprocessing device (gvirtus remote when node1.preprocess_device is "remote")."""
    from transport import TryOnClient

    catalog = open_catalog(cfg)
    client = TryOnClient.from_config(cfg)
    log.info("transport to node 2: %s %s (%s)", client.channel.info.backend, client.channel.info.endpoint,
             client.channel.info.reason)
    remote = _remote_connector(cfg) if cfg["node1"]["preprocess_device"] == "remote" else None
    return DistributedPipeline(cfg, catalog, client, FallbackDevice(remote, local="cpu")), catalog
