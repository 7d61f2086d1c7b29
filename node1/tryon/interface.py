"""What node 1's web app needs of the try-on: a `TryOnRunner`, a `GarmentCatalog`, their results.

The web app (`node1.web`) depends only on this module and node1.tryon.errors. Runners
(node1.tryon.runner: distributed over node 2, or in process) translate their components' exceptions
into those errors at their boundary (`raise NoPersonInPhoto(...) from exc`); the HTTP status of each
error is node1.web.errors.HTTP_STATUS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

# The stages of a try-on, in order. The page shows one step per stage; timings_ms has one key each.
STAGES: tuple[str, ...] = ("pose", "parsing", "transfer", "tryon")
RESULT_JPEG_QUALITY = 92   # the result JPEG the shopper gets (PIL quality; node 2 makes it: TryOnResult.jpeg)

# progress(stage, ms): called when `stage` has FINISHED, with its measured wall time in milliseconds.
ProgressFn = Callable[[str, float], None]


# ----------------------------------------------------------------------------- runner
@dataclass(frozen=True)
class TryOnResult:
    """What one try-on produced.

    Attributes:
        image: (H, W, 3) uint8 RGB, the shopper wearing the garment (any size; usually the
            photo's size or 768x1024); None when the runner returns it encoded (`jpeg`).
        jpeg: the same picture as a JPEG file at RESULT_JPEG_QUALITY, made by node 2 (a runner built
            with result_jpeg_quality), else None.
        timings_ms: wall time per stage in milliseconds, keys from STAGES (others allowed).
        device: where preprocessing ran, e.g. "cuda:0 (gvirtus)" or "cpu (local fallback)".
        transport: how tensors reached VITON: "rdma", "tcp", "inproc".
        gvirtus_calls: remote CUDA calls this request made.
        transport_bytes: bytes sent + received over the transport (feeds transport_bytes_total).
        preprocess_fallback: why the local CPU served preprocessing although a remote device is
            configured ("connect_failed", "remote_failed", "reconnecting", "circuit_open"), else None.
    """

    image: np.ndarray | None
    timings_ms: dict[str, float]
    device: str
    transport: str
    gvirtus_calls: int = 0
    transport_bytes: int = 0
    preprocess_fallback: str | None = None
    jpeg: bytes | None = None


@dataclass(frozen=True)
class RunnerHealth:
    """The pipeline's part of GET /health. `health()` must answer fast (cache probes).

    Attributes:
        models_loaded: names of the loaded models, e.g. ["pose_landmark_full", "geometric"].
        transport: transport in use ("rdma", "tcp", "inproc").
        node2_reachable: the gateway / VITON service answered its last probe.
        gpu: {"name", "memory_used_mb", "memory_total_mb", "temperature_c"} when known
            (temperature may be None), else None.
        details: anything else worth showing (gvirtus session, fallback state, ...).
        node2_status: node 2's own status ("ok", "degraded", ...) from its health document, or
            None when it did not answer.
        models_ready: the models the configured path needs are loaded.
    """

    models_loaded: list[str]
    transport: str
    node2_reachable: bool
    gpu: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)
    node2_status: str | None = None
    models_ready: bool = True


@runtime_checkable
class TryOnRunner(Protocol):
    """Dresses a photo in a catalog garment. Must be safe to call from several threads."""

    def run(self, photo: np.ndarray, garment_id: str, progress: ProgressFn, *, source: bytes | None = None
            ) -> TryOnResult:
        """Try the garment on the person in the photo.

        Args:
            photo: (H, W, 3) uint8 RGB, EXIF orientation already applied, sides <= image_max_side.
            garment_id: a catalog id (the web app checked it exists).
            progress: called with each stage of STAGES and its wall time in ms when the stage
                has finished (ProgressFn).
            source: the shopper's JPEG file when `photo` is exactly what it decodes to (no rotation,
                no conversion: node1.web.uploads.decodes_as_is), else None. A runner may send it to
                node 2 instead of the pixels (~17x fewer bytes).

        Raises:
            NoPersonInPhoto, UnknownGarment, Node2Unavailable, TryOnTimeout, TryOnFailed
            (or another TryOnError). Any other exception is reported as TryOnFailed.
        """
        ...

    def health(self) -> RunnerHealth:
        ...


# A runner MAY also have `counters: RunnerCounters`-like state whose `snapshot()` returns
# {"gvirtus_calls": int, "preprocess_fallbacks": {reason: int}} (node1.tryon.runner.RunnerCounters);
# node1.web's /metrics reports it as gvirtus_calls_total and preprocess_fallbacks_total{reason}.


# ----------------------------------------------------------------------------- catalog
GARMENT_CATEGORIES = ("top", "bottom", "dress")   # garments.CATEGORIES (tests/web check they agree)


@dataclass(frozen=True)
class GarmentInfo:
    """A catalog entry as the web app shows it; `category` is "top", "bottom" or "dress"."""

    id: str
    name: str
    category: str = "top"


@runtime_checkable
class GarmentCatalog(Protocol):
    """The garments a shopper can pick. Must be safe to call from several threads."""

    def list(self) -> list[GarmentInfo]:
        ...

    def get(self, garment_id: str) -> GarmentInfo:
        """Raises UnknownGarment."""
        ...

    def thumbnail(self, garment_id: str) -> tuple[bytes, str]:
        """(encoded image bytes, MIME type) of a small preview. Raises UnknownGarment."""
        ...

    def add(self, data: bytes, name: str, category: str = "top") -> GarmentInfo:
        """Prepare and store an operator's garment photo: the uploaded JPEG/PNG/WebP bytes (already
        checked by node1.web.uploads; PNG/WebP alpha may carry the cloth mask) as a garment of
        `category` ("top", "bottom", "dress"). Raises BadGarment (BadGarmentCategory for another
        category, GarmentCategoryMismatch when the photo is not a garment of that category)."""
        ...


__all__ = [
    "GARMENT_CATEGORIES", "STAGES", "GarmentCatalog", "GarmentInfo", "ProgressFn", "RunnerHealth", "TryOnResult",
    "TryOnRunner",
]
