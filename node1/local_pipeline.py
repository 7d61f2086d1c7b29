"""A real, minimal, in-process TryOnPipeline: node 1 preprocessing on the CPU + the VITON engine here.

No servers, no transport, no gvirtus: `node1.preprocess.preprocess(photo, device="cpu")` (pose and
human parsing) and `viton.make_engine(viton.engine)` in this process, garments from the catalog.
It is what `python -m node1.cli tryon --in-process` does, behind the web app's interface, for a
single-machine demo and for testing the web app with real components:

    VM_PIPELINE_FACTORY=node1.local_pipeline:build_local python -m node1.web

The distributed pipeline (gvirtus -> transport -> VITON service on node 2) is a separate module.
Progress: node1.preprocess runs pose and parsing as one call, so "pose" is reported before it and
"parsing" when it returns; "transfer" is an in-process hand-over (no bytes move).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from mirror import Config
from node1.garment_catalog import WebCatalog, open_catalog
from node1.pipeline_api import (
    NoPersonInPhoto,
    PipelineFailed,
    PipelineHealth,
    PipelineResult,
    ProgressFn,
)

TRANSPORT = "inproc"


class LocalPipeline:
    """Thread-safe: each stage runs under its own lock (2 CPU cores; models keep per-call buffers)."""

    def __init__(self, cfg: Config, catalog: WebCatalog) -> None:
        from viton import make_engine

        vt = cfg["viton"]
        self.catalog = catalog
        self.engine = make_engine(vt["engine"], device="cpu",
                                  checkpoint_dir=cfg.path(vt["checkpoint_dir"]) if vt.get("checkpoint_dir") else None)
        self._pre_lock = threading.Lock()
        self._engine_lock = threading.Lock()

    def run(self, photo: np.ndarray, garment_id: str, progress: ProgressFn) -> PipelineResult:
        from node1.pipeline import run_preprocess  # the same error mapping as the deployment's pipeline
        from viton import GarmentData, PersonData, PoseIncomplete, VitonError

        garment = self.catalog.garment(garment_id)          # UnknownGarment
        timings: dict[str, float] = {}
        progress("pose")
        t0 = time.perf_counter()
        with self._pre_lock:
            pre = run_preprocess("cpu", photo)
        t1 = time.perf_counter()
        timings["pose"] = float(pre.timings_ms.get("pose", (t1 - t0) * 1000.0))
        timings["parsing"] = float(pre.timings_ms.get("parse", 0.0))
        progress("parsing")
        progress("transfer")
        t2 = time.perf_counter()
        person = PersonData(image=np.ascontiguousarray(pre.image), parse=pre.parse,
                            keypoints=np.asarray(pre.body25, np.float32), pose_render=pre.pose_image,
                            person_mask=np.asarray(pre.person_mask, np.float32))
        cloth = GarmentData(image=garment.image, mask=garment.mask,
                            landmarks=np.asarray(garment.landmarks, np.float32), kind=garment.kind)
        timings["transfer"] = (time.perf_counter() - t2) * 1000.0
        progress("tryon")
        t3 = time.perf_counter()
        try:
            with self._engine_lock:
                out = self.engine.try_on(person, cloth)
        except PoseIncomplete as exc:
            raise NoPersonInPhoto(f"the photo does not show enough of the body for this garment ({exc}); "
                                  "include both shoulders and the upper body") from exc
        except VitonError as exc:
            raise PipelineFailed(f"the try-on engine failed ({exc.code}): {exc}") from exc
        timings["tryon"] = (time.perf_counter() - t3) * 1000.0
        return PipelineResult(image=out.image, timings_ms=timings, device=str(pre.device), transport=TRANSPORT)

    def health(self) -> PipelineHealth:
        details: dict[str, Any] = {"mode": "in-process: preprocessing and VITON run in node1.web; node 2 unused"}
        return PipelineHealth(models_loaded=["node1.preprocess (cpu)", f"viton.{self.engine.name}"],
                              transport=TRANSPORT, node2_reachable=True, gpu=None, details=details)


def build_local(cfg: Config) -> tuple[LocalPipeline, WebCatalog]:
    """Pipeline factory for node1.web ($VM_PIPELINE_FACTORY=node1.local_pipeline:build_local)."""
    catalog = open_catalog(cfg)
    return LocalPipeline(cfg, catalog), catalog
