"""Try-on jobs: run the runner on a bounded thread pool, record progress, keep results in memory.

A job is created by POST /api/tryon. The synchronous API waits for it; the page instead follows
its server-sent events (one `stage` event per runner stage, then `done` or `error`). Jobs and
their results live in a TTLStore (memory only, limits.result_ttl_s). The shopper's photo is
dropped from memory as soon as the runner returns.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mirror import request_context
from node1.tryon import (
    Busy,
    TryOnError,
    TryOnFailed,
    TryOnResult,
    TryOnRunner,
    TryOnTimeout,
)
from node1.web.metrics import Metrics
from node1.web.store import TTLStore
from node1.web.uploads import encode_jpeg

# Try-ons waiting for a runner thread beyond which new ones get 503 busy (bounds memory).
MAX_PENDING_JOBS = 32
JOB_ID_BYTES = 16

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One try-on. Fields change under `cond`; read them through `snapshot()`."""

    id: str
    garment_id: str
    deadline: float                       # time.monotonic() after which the job has timed out
    photo: np.ndarray | None              # (H, W, 3) uint8 RGB until the runner is done with it
    timings_ms: dict[str, float] = field(default_factory=dict)
    state: str = "queued"                 # queued | running | done | failed
    stages: list[str] = field(default_factory=list)     # finished stages, in order
    stage_ms: dict[str, float] = field(default_factory=dict)  # their wall times
    response: dict[str, Any] | None = None
    result_jpeg: bytes | None = None
    error: TryOnError | None = None
    cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    def snapshot(self) -> dict[str, Any]:
        with self.cond:
            return {"state": self.state, "stages": list(self.stages), "stage_ms": dict(self.stage_ms),
                    "response": self.response,
                    "error": self.error}


class JobRunner:
    """Runs jobs on `workers` runner threads; keeps them in `store`.

    Args:
        runner: the TryOnRunner.
        store: where jobs (and their results) live until their TTL passes.
        metrics: counters and histograms to update.
        timeout_s: a job not finished this long after submission fails with TryOnTimeout.
        workers: runner threads (node1.workers).
    """

    def __init__(self, runner: TryOnRunner, store: TTLStore[Job], metrics: Metrics, *, timeout_s: float,
                 workers: int, max_pending: int = MAX_PENDING_JOBS) -> None:
        self.runner = runner
        self.store = store
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.capacity = workers + max_pending
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tryon")
        self._lock = threading.Lock()
        self._active = 0

    @property
    def active(self) -> int:
        with self._lock:
            return self._active

    def submit(self, photo: np.ndarray, garment_id: str, timings_ms: dict[str, float]) -> Job:
        """Queue a try-on; raises Busy when `capacity` jobs are already queued or running."""
        with self._lock:
            if self._active >= self.capacity:
                raise Busy(f"{self._active} try-ons are already queued or running; try again in a few seconds")
            self._active += 1
            self.metrics.active_jobs.set(self._active)
        job = Job(id=secrets.token_urlsafe(JOB_ID_BYTES), garment_id=garment_id,
                  deadline=time.monotonic() + self.timeout_s, photo=photo, timings_ms=dict(timings_ms))
        self.store.put(job.id, job, nbytes=photo.nbytes)
        try:
            self._pool.submit(self._run, job)
        except RuntimeError as exc:  # the pool is shutting down
            self._release()
            raise Busy("the server is shutting down; try again in a moment") from exc
        return job

    def get(self, job_id: str) -> Job | None:
        job = self.store.get(job_id)
        if job is not None:
            self.check_deadline(job)
        return job

    def wait(self, job: Job, timeout_s: float | None = None) -> Job:
        """Block until the job finished or its deadline passed (then it fails with TryOnTimeout)."""
        end = job.deadline if timeout_s is None else min(job.deadline, time.monotonic() + timeout_s)
        with job.cond:
            job.cond.wait_for(lambda: job.finished, timeout=max(end - time.monotonic(), 0.0))
        self.check_deadline(job)
        return job

    def check_deadline(self, job: Job) -> None:
        if not job.finished and time.monotonic() >= job.deadline:
            self._fail(job, TryOnTimeout(f"the try-on did not finish within {self.timeout_s:g} s "
                                            "(limits.request_timeout_s); try again"))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ worker side
    def _run(self, job: Job) -> None:
        with request_context(job.id[:8]):
            try:
                self._run_job(job)
            finally:
                job.photo = None
                self._release()

    def _release(self) -> None:
        with self._lock:
            self._active -= 1
            self.metrics.active_jobs.set(self._active)

    def _progress(self, job: Job, stage: str, ms: float) -> None:
        """A stage has finished (ProgressFn): record it with its wall time for the job's events."""
        with job.cond:
            if job.finished:
                return
            job.stages.append(str(stage))
            job.stage_ms[str(stage)] = round(float(ms), 2)
            job.cond.notify_all()

    def _run_job(self, job: Job) -> None:
        with job.cond:
            if job.finished:      # timed out while queued
                return
            job.state = "running"
            job.cond.notify_all()
        photo = job.photo
        if photo is None:
            return
        t0 = time.perf_counter()
        try:
            result = self.runner.run(photo, job.garment_id, lambda stage, ms: self._progress(job, stage, ms))
            if not isinstance(result, TryOnResult):
                raise TryOnFailed(f"the runner returned {type(result).__name__}, expected TryOnResult")
            t_enc = time.perf_counter()
            jpeg = encode_jpeg(np.ascontiguousarray(result.image))
            encode_ms = (time.perf_counter() - t_enc) * 1000.0
        except TryOnError as exc:
            self._fail(job, exc)
            return
        except Exception as exc:
            log.exception("try-on runner failed")
            self._fail(job, TryOnFailed(f"the try-on failed inside the runner ({type(exc).__name__}: {exc})"))
            return
        runner_ms = (t_enc - t0) * 1000.0
        timings = dict(job.timings_ms)
        timings.update({k: float(v) for k, v in result.timings_ms.items()})
        timings["encode"] = encode_ms
        timings["total"] = timings.get("decode", 0.0) + runner_ms + encode_ms
        self.metrics.transport_bytes.inc(max(result.transport_bytes, 0))
        response = {"id": job.id, "result_url": f"/api/result/{job.id}",
                    "timings_ms": {k: round(v, 2) for k, v in timings.items()},
                    "device": result.device, "transport": result.transport}
        with job.cond:
            if job.finished:      # timed out meanwhile: the shopper was already told
                return
            job.result_jpeg = jpeg
            job.response = response
            job.timings_ms = timings
            job.state = "done"
            job.cond.notify_all()
        self.store.resize(job.id, len(jpeg))
        self.metrics.observe_ms(timings)
        self.metrics.outcome("ok")

    def _fail(self, job: Job, exc: TryOnError) -> None:
        with job.cond:
            if job.finished:
                return
            job.error = exc
            job.state = "failed"
            job.cond.notify_all()
        self.store.resize(job.id, 0)
        self.metrics.outcome(exc.code)
        log.info("try-on %s failed: %s: %s", job.id[:8], exc.code, exc.message)
