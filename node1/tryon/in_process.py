"""The in-process runner: the same request path as the distributed one (node1.tryon.runner), minus
the wire. Preprocessing runs on this process's CPU and the try-on message goes to a VITON service
object (viton.service.TryOnService: the same contract check, queue and engine thread as the
service process) instead of over the transport. No servers, no gvirtus.

It is what `python -m node1.cli tryon --in-process` and the benchmarks' baseline run, and a
single-machine web app:

    VM_RUNNER_FACTORY=node1.tryon.in_process:build_in_process python -m node1.web
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np

from mirror import Config
from node1.tryon.catalog import WebCatalog, open_catalog
from node1.tryon.interface import RESULT_JPEG_QUALITY, RunnerHealth
from node1.tryon.runner import Runner, loaded_models
from transport import Frame, RequestTimeout, new_request_id
from viton import contract
from viton.contract import Kind

TRANSPORT = "inproc"


class InProcessLink:
    """Node2Link to a TryOnService in this process: the message the gateway would forward, built by
    the contract, handed to the service's handler; its engine thread answers."""

    transport = TRANSPORT

    def __init__(self, engine: Any) -> None:
        from viton.service import TryOnService

        self.service = TryOnService(engine)
        self.service.start()

    @property
    def reads(self) -> tuple[str, ...]:
        return tuple(self.service.engine.reads)

    def tryon(self, person: dict[str, np.ndarray], garment: Any, timeout_s: float, *,
              request_id: str | None = None, result: Mapping[str, object] | None = None) -> Frame:
        rid = request_id or new_request_id()
        meta, tensors = contract.viton_request(person, garment.image, garment.mask,
                                               np.asarray(garment.landmarks, np.float32), garment_kind=garment.kind,
                                               garment_id=garment.id, origin_id=rid, result=result)
        answer: Future[Frame] = Future()
        request = Frame(Kind.TRYON, rid, meta=meta, tensors=tensors)  # type: ignore[arg-type]
        self.service.handle(request, answer.set_result)
        try:
            return answer.result(timeout=timeout_s)
        except FutureTimeout as exc:
            raise RequestTimeout(f"the in-process try-on {rid!r} did not finish within {timeout_s:.1f} s") from exc

    def health(self, timeout_s: float) -> Frame:
        return Frame(Kind.HEALTH, new_request_id(), meta=self.service.health())

    def close(self) -> None:
        self.service.stop()


def build_in_process(cfg: Config, catalog: WebCatalog | None = None, *,
                     result_jpeg_quality: int | None = RESULT_JPEG_QUALITY) -> tuple[Runner, WebCatalog]:
    """Runner factory for node1.web ($VM_RUNNER_FACTORY=node1.tryon.in_process:build_in_process), the
    CLI's --in-process (result_jpeg_quality None: raw pixels) and the benchmarks' baseline: preprocessing
    on the CPU, the configured engine here; the result comes as the web app's JPEG, made by the service."""
    from viton import engine_from_config

    catalog = catalog if catalog is not None else open_catalog(cfg)
    link = InProcessLink(engine_from_config(cfg))

    def health() -> RunnerHealth:
        doc = link.service.health()
        models = loaded_models()
        return RunnerHealth(models_loaded=[*models["cpu"], f"viton.{doc['engine']}"],
                            transport=TRANSPORT, node2_reachable=doc["status"] == "ok", gpu=None,
                            details={"mode": "in-process: preprocessing and VITON run in this process; "
                                             "node 2 unused (its models load on the first try-on)",
                                     "viton": doc, "models": models},
                            node2_status=str(doc["status"]))

    runner = Runner(catalog, "cpu", link, link.reads, timeout_s=float(cfg["limits"]["request_timeout_s"]),
                    health_fn=health, result_jpeg_quality=result_jpeg_quality)
    return runner, catalog
