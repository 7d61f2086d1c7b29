"""Where try-on jobs, their results and idempotency keys live: one interface, two stores.

    JobStore           the interface node1.web.jobs and the API use
    MemoryJobStore     the embedded default (`node1.store: "memory"`): one process's memory, a TTLStore;
                       only one web worker process may use it (mirror.config refuses more)
    RedisJobStore      `node1.store: "redis"` (node1.web.redisstore): any number of worker processes
                       and node-1 replicas share jobs, results and rate-limit counters

A job is a `JobRecord` (plain data: what any worker can read back), never a live object: the
worker that runs a job writes its changes into the store, and every other request (status, SSE
events, the result, a retried POST) reads the store. Finishing is compare-and-set: the first of
`finish`/`fail` wins, later ones are ignored (a late result after a timeout is discarded).

Each job has an `owner`: the worker process running it. `orphaned(rec)` says whether that process
is gone (its lease expired) while the job was unfinished; the job is then failed with
`worker_lost` and a retried POST with the same Idempotency-Key runs it again.

Nothing of the shopper is written to disk by either store: the photo stays in the memory of the
worker that runs it (never in the store), the result JPEG lives in the store for `ttl_s`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from node1.tryon import RateLimited, ServiceError, TryOnError
from node1.web.store import TTLStore

FINISHED_STATES = ("done", "failed")


class WorkerLost(ServiceError):  # noqa: N818 (names say what went wrong)
    """The web worker process running the job died (crash, kill -9) before it finished."""

    code = "worker_lost"
    default_message = ("the server process running this try-on stopped before it finished; "
                       "send the request again (the same Idempotency-Key runs it once more)")


class StoreUnavailable(ServiceError):  # noqa: N818 (names say what went wrong)
    """The shared store (Redis) did not answer."""

    code = "store_unavailable"
    default_message = "the shared store did not answer; try again in a moment"


@dataclass(frozen=True)
class JobRecord:
    """One try-on as stored. `deadline` is wall-clock time (time.time()): workers share it."""

    id: str
    garment_id: str
    deadline: float
    owner: str = ""
    state: str = "queued"                                 # queued | running | done | failed
    stages: tuple[str, ...] = ()                           # finished stages, in order
    stage_ms: dict[str, float] = field(default_factory=dict)
    response: dict[str, Any] | None = None                 # the 200 body once done
    error: dict[str, Any] | None = None                    # {"code", "message"[, "retry_after_s"]} once failed

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES

    def exception(self) -> TryOnError | None:
        return None if self.error is None else error_from_dict(self.error)


def error_to_dict(exc: TryOnError) -> dict[str, Any]:
    out: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if isinstance(exc, RateLimited):
        out["retry_after_s"] = exc.retry_after_s
    return out


def _error_classes(base: type[TryOnError] = TryOnError) -> dict[str, type[TryOnError]]:
    found: dict[str, type[TryOnError]] = {base.code: base}
    for sub in base.__subclasses__():
        for code, cls in _error_classes(sub).items():
            found.setdefault(code, cls)
    return found


def error_from_dict(data: dict[str, Any]) -> TryOnError:
    """The TryOnError a stored error stands for (same class, hence the same HTTP status and code)."""
    classes = _error_classes()
    classes.setdefault(WorkerLost.code, WorkerLost)
    classes.setdefault(StoreUnavailable.code, StoreUnavailable)
    cls = classes.get(str(data.get("code")), TryOnError)
    if cls is RateLimited:
        return RateLimited(str(data.get("message")), retry_after_s=float(data.get("retry_after_s", 1.0)))
    exc = cls(str(data.get("message") or ""))
    exc.code = str(data.get("code") or exc.code)  # an unknown code keeps its name (status from the base)
    return exc


class JobStore(Protocol):
    """What node1.web.jobs and the API need of a store. Thread-safe; safe across processes for Redis."""

    ttl_s: float

    def create(self, rec: JobRecord, nbytes: int = 0) -> None: ...
    def get(self, job_id: str) -> JobRecord | None: ...
    def set_running(self, job_id: str) -> bool: ...        # False when already finished (or gone)
    def add_stage(self, job_id: str, stage: str, ms: float) -> None: ...
    def finish(self, job_id: str, response: dict[str, Any], jpeg: bytes) -> bool: ...  # True if it won
    def fail(self, job_id: str, error: dict[str, Any]) -> bool: ...                     # True if it won
    def result(self, job_id: str) -> bytes | None: ...
    def wait(self, job_id: str, until: Callable[[JobRecord], bool], timeout_s: float) -> JobRecord | None: ...
    def orphaned(self, rec: JobRecord) -> bool: ...
    def claim_key(self, key: str, job_id: str, replace_job: str | None = None) -> str | None: ...
    def __len__(self) -> int: ...
    def close(self) -> None: ...


class JobTransitions:
    """A job's state changes, the same for every store: each is one atomic `_update(job_id, change, jpeg)`
    of the store's (False when the job is gone or already finished)."""

    def _update(self, job_id: str, change: Callable[[JobRecord], JobRecord], jpeg: bytes | None = None) -> bool:
        raise NotImplementedError

    def set_running(self, job_id: str) -> bool:
        return self._update(job_id, lambda r: replace(r, state="running"))

    def add_stage(self, job_id: str, stage: str, ms: float) -> None:
        self._update(job_id, lambda r: replace(r, stages=(*r.stages, stage),
                                               stage_ms={**r.stage_ms, stage: round(float(ms), 2)}))

    def finish(self, job_id: str, response: dict[str, Any], jpeg: bytes) -> bool:
        return self._update(job_id, lambda r: replace(r, state="done", response=response), jpeg)

    def fail(self, job_id: str, error: dict[str, Any]) -> bool:
        return self._update(job_id, lambda r: replace(r, state="failed", error=error))


@dataclass
class _MemJob:
    rec: JobRecord
    jpeg: bytes | None = None


class MemoryJobStore(JobTransitions):
    """The embedded store: one process's memory (a TTLStore, swept by a timer), a Condition for waiters.

    Args:
        ttl_s: how long a job and its result are kept (limits.result_ttl_s).
        clock, max_items, max_bytes: passed to TTLStore (tests inject a clock).
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float] | None = None, **kw: Any) -> None:
        store_kw: dict[str, Any] = dict(kw)
        if clock is not None:
            store_kw["clock"] = clock
        self._jobs: TTLStore[_MemJob] = TTLStore(ttl_s=ttl_s, **store_kw)
        self._keys: TTLStore[str] = TTLStore(ttl_s=ttl_s, **store_kw)
        self.ttl_s = self._jobs.ttl_s
        self._cond = threading.Condition()
        self._key_lock = threading.Lock()

    def create(self, rec: JobRecord, nbytes: int = 0) -> None:
        with self._cond:
            self._jobs.put(rec.id, _MemJob(rec), nbytes=nbytes)
            self._cond.notify_all()

    def get(self, job_id: str) -> JobRecord | None:
        item = self._jobs.get(job_id)
        return None if item is None else item.rec

    def _update(self, job_id: str, change: Callable[[JobRecord], JobRecord | None],
                jpeg: bytes | None = None) -> bool:
        with self._cond:
            item = self._jobs.get(job_id)
            if item is None or item.rec.finished:
                return False
            new = change(item.rec)
            if new is None:
                return False
            item.rec = new
            if new.finished:
                item.jpeg = jpeg
                self._jobs.resize(job_id, len(jpeg or b""))   # the photo is gone; the result stays ttl_s
            self._cond.notify_all()
            return True

    def result(self, job_id: str) -> bytes | None:
        item = self._jobs.get(job_id)
        return None if item is None else item.jpeg

    def wait(self, job_id: str, until: Callable[[JobRecord], bool], timeout_s: float) -> JobRecord | None:
        end = time.monotonic() + max(timeout_s, 0.0)
        with self._cond:
            while True:
                rec = self.get(job_id)
                left = end - time.monotonic()
                if rec is None or until(rec) or left <= 0:
                    return rec
                self._cond.wait(left)

    def orphaned(self, rec: JobRecord) -> bool:
        return False   # one process: if it died, the store died with it

    def claim_key(self, key: str, job_id: str, replace_job: str | None = None) -> str | None:
        """Map an Idempotency-Key to `job_id`. Returns the job id the key already names (nothing
        changed), or None when the key now names `job_id`. `replace_job`: take the key over from
        that job (a retried job whose worker was lost)."""
        with self._key_lock:
            current = self._keys.get(key)
            if current is not None and current != replace_job:
                return current
            self._keys.put(key, job_id)
            return None

    def __len__(self) -> int:
        return len(self._jobs)

    def close(self) -> None:
        self._jobs.close()
        self._keys.close()
