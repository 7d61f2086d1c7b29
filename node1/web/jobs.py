"""Try-on jobs: run the runner on a bounded thread pool, record progress and results in the store.

A job is created by POST /api/tryon. The synchronous API waits for it; the page instead follows
its server-sent events (one `stage` event per runner stage, then `done` or `failed`). Jobs and
their results live in a JobStore (node1.web.jobstore): this process's memory, or Redis shared by
every worker and replica. The job runs in the worker that received the POST; every change is
written to the store, so any worker can answer for it. The shopper's photo stays in this worker's
memory only, and is dropped as soon as the runner returns.

Idempotency: a POST carrying an Idempotency-Key is mapped to its job in the store, so the same
key sent again (the page retries when a connection dropped) returns that job instead of running a
second one; if the worker running it died (`worker_lost`), the retry runs it again.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

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
from node1.web.jobstore import JobRecord, JobStore, WorkerLost, error_to_dict
from node1.web.metrics import Metrics
from node1.web.uploads import encode_jpeg

# Try-ons waiting for a runner thread beyond which new ones get 503 busy (bounds memory).
MAX_PENDING_JOBS = 32
JOB_ID_BYTES = 16
IDEMPOTENCY_KEY_MAX = 128     # characters of an Idempotency-Key

log = logging.getLogger(__name__)


class JobRunner:
    """Runs jobs on `workers` runner threads of this process; keeps them in `store`.

    Args:
        runner: the TryOnRunner.
        store: where jobs (and their results) live until their TTL passes.
        metrics: counters and histograms to update.
        timeout_s: a job not finished this long after submission fails with TryOnTimeout.
        workers: runner threads (node1.workers).
    """

    def __init__(self, runner: TryOnRunner, store: JobStore, metrics: Metrics, *, timeout_s: float,
                 workers: int, max_pending: int = MAX_PENDING_JOBS) -> None:
        self.runner = runner
        self.store = store
        self.metrics = metrics
        self.timeout_s = timeout_s
        self.capacity = workers + max_pending
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tryon")
        self._lock = threading.Lock()
        self._active = 0
        # job id -> (photo, the JPEG it was decoded from as is, or None), until the runner is done with it
        self._photos: dict[str, tuple[np.ndarray, bytes | None]] = {}

    @property
    def active(self) -> int:
        with self._lock:
            return self._active

    def submit(self, photo: np.ndarray, garment_id: str, timings_ms: dict[str, float],
               idempotency_key: str | None = None, source: bytes | None = None) -> JobRecord:
        """Queue a try-on (or, with a known `idempotency_key`, return the job that key already runs).
        `source`: the upload when `photo` is exactly what it decodes to (uploads.decodes_as_is), for the runner.

        Raises Busy when `capacity` jobs are already queued or running in this process."""
        job_id = secrets.token_urlsafe(JOB_ID_BYTES)
        replace_job: str | None = None
        if idempotency_key is not None:
            while (existing := self.store.claim_key(idempotency_key, job_id, replace_job)) is not None:
                rec = self.get(existing)
                if rec is not None and (rec.error or {}).get("code") != WorkerLost.code:
                    return rec                       # the same request again: the same job
                replace_job = existing               # expired, or its worker died: run it again
        with self._lock:
            if self._active >= self.capacity:
                raise Busy(f"{self._active} try-ons are already queued or running; try again in a few seconds")
            self._active += 1
            self.metrics.active_jobs.set(self._active)
        rec = JobRecord(id=job_id, garment_id=garment_id, deadline=time.time() + self.timeout_s,
                        owner=getattr(self.store, "owner", ""))
        self.store.create(rec, nbytes=photo.nbytes + len(source or b""))
        self._photos[job_id] = (photo, source)
        try:
            self._pool.submit(self._run, job_id, dict(timings_ms))
        except RuntimeError as exc:  # the pool is shutting down
            self._photos.pop(job_id, None)
            self._release()
            raise Busy("the server is shutting down; try again in a moment") from exc
        return self.store.get(job_id) or rec

    def photo_held(self, job_id: str) -> bool:
        """Whether this process still holds the job's photo (only until the runner returns)."""
        return job_id in self._photos

    def get(self, job_id: str) -> JobRecord | None:
        rec = self.store.get(job_id)
        if rec is not None and not rec.finished:
            rec = self.check(rec)
        return rec

    def wait(self, job_id: str, timeout_s: float | None = None) -> JobRecord | None:
        """Block until the job finished, its deadline passed (it fails with TryOnTimeout) or its
        worker was lost (it fails with WorkerLost); None when it is unknown or expired."""
        rec = self.store.get(job_id)
        if rec is None:
            return None
        left = rec.deadline - time.time()
        if timeout_s is not None:
            left = min(left, timeout_s)
        rec = self.store.wait(job_id, lambda r: r.finished, left)
        return None if rec is None else self.check(rec)

    def check(self, rec: JobRecord) -> JobRecord:
        """Fail an unfinished job whose deadline passed or whose worker is gone; the record as it now is."""
        if rec.finished:
            return rec
        if time.time() >= rec.deadline:
            self._fail(rec.id, TryOnTimeout(f"the try-on did not finish within {self.timeout_s:g} s "
                                               "(limits.request_timeout_s); try again"))
        elif self.store.orphaned(rec):
            self._fail(rec.id, WorkerLost())
        return self.store.get(rec.id) or rec

    def shutdown(self) -> None:
        """Stop taking jobs and close the store (a Redis store gives up this process's lease)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    # ------------------------------------------------------------------ worker side
    def _run(self, job_id: str, timings_ms: dict[str, float]) -> None:
        with request_context(job_id[:8]):
            try:
                self._run_job(job_id, timings_ms)
            finally:
                self._photos.pop(job_id, None)
                self._release()

    def _release(self) -> None:
        with self._lock:
            self._active -= 1
            self.metrics.active_jobs.set(self._active)

    def _progress(self, job_id: str, stage: str, ms: float) -> None:
        """A stage has finished (ProgressFn): record it with its wall time for the job's events."""
        self.store.add_stage(job_id, str(stage), ms)

    def _run_job(self, job_id: str, timings_ms: dict[str, float]) -> None:
        rec = self.store.get(job_id)
        if rec is None or time.time() >= rec.deadline or not self.store.set_running(job_id):
            if rec is not None:
                self.check(rec)      # timed out while queued
            return
        held = self._photos.get(job_id)
        if held is None:
            return
        photo, source = held
        t0 = time.perf_counter()
        try:
            result = self.runner.run(photo, rec.garment_id, lambda stage, ms: self._progress(job_id, stage, ms),
                                     source=source)
            if not isinstance(result, TryOnResult):
                raise TryOnFailed(f"the runner returned {type(result).__name__}, expected TryOnResult")
            t_enc = time.perf_counter()
            if result.jpeg is not None:          # node 2 encoded it (node1.tryon.RESULT_JPEG_QUALITY)
                jpeg = result.jpeg
            elif result.image is not None:
                jpeg = encode_jpeg(np.ascontiguousarray(result.image))
            else:
                raise TryOnFailed("the runner returned neither an image nor a JPEG")
            encode_ms = (time.perf_counter() - t_enc) * 1000.0
        except TryOnError as exc:
            self._fail(job_id, exc)
            return
        except Exception as exc:
            log.exception("try-on runner failed")
            self._fail(job_id, TryOnFailed(f"the try-on failed inside the runner ({type(exc).__name__}: {exc})"))
            return
        runner_ms = (t_enc - t0) * 1000.0
        timings = dict(timings_ms)
        timings.update({k: float(v) for k, v in result.timings_ms.items()})
        timings["encode"] = encode_ms
        timings["total"] = timings.get("decode", 0.0) + runner_ms + encode_ms
        self.metrics.transport_bytes.inc(max(result.transport_bytes, 0))
        response = {"id": job_id, "result_url": f"/api/result/{job_id}",
                    "timings_ms": {k: round(v, 2) for k, v in timings.items()},
                    "device": result.device, "transport": result.transport}
        if not self.store.finish(job_id, response, jpeg):
            return            # timed out meanwhile: the shopper was already told; the late result is discarded
        self.metrics.observe_ms(timings)
        self.metrics.outcome("ok")

    def _fail(self, job_id: str, exc: TryOnError) -> None:
        if not self.store.fail(job_id, error_to_dict(exc)):
            return
        self.metrics.outcome(exc.code)
        log.info("try-on %s failed: %s: %s", job_id[:8], exc.code, exc.message)
