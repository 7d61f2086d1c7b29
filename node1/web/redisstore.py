"""The shared store (`node1.store: "redis"`): jobs, results and idempotency keys in a real Redis.

Any number of gunicorn worker processes (`node1.web_processes`) and node-1 replicas pointed at the
same Redis see the same jobs: a POST served by one worker, the events stream, status and result
served by another. Keys (all under `prefix`, default "vm:"):

    job:<id>       the JobRecord as JSON                     SET ... EX ttl_s (restarted when it finishes)
    result:<id>    the result JPEG                           SET ... EX ttl_s
    idem:<key>     Idempotency-Key -> job id                  SET ... NX EX ttl_s
    lease:<owner>  "this worker process is alive"            SET ... EX LEASE_TTL_S, renewed every LEASE_RENEW_S

Expiry is Redis's own (no sweeper here). Updates of a job are optimistic transactions
(WATCH/MULTI), so a finish and a timeout racing from two processes cannot both win. Waiters (the
synchronous POST, the SSE stream) re-read the job when this process changed one, and at least
every WAIT_POLL_S (changes made by other processes): a GET on a unix socket costs tens of
microseconds. A job whose owner died while it was unfinished (kill -9, OOM) is orphaned: on the
same host the owner's pid and start time are checked in /proc (known at once); for a replica on
another host, its lease has expired. `orphaned()` says so; the job fails `worker_lost`.

The photo is never written to Redis: it stays in the memory of the worker running the job.
Redis runs memory only (no RDB, no AOF: mirror.redis_server), so nothing reaches a disk.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from node1.web.jobstore import JobRecord, JobTransitions

LEASE_TTL_S = 10.0         # a worker on ANOTHER host silent this long is taken for dead
LEASE_RENEW_S = 1.0
WAIT_POLL_S = 0.05         # how often a waiter re-reads the job
REDIS_IO_TIMEOUT_S = 5.0   # one Redis command; a hung Redis fails the request instead of hanging it
SCAN_BATCH = 500
RETRIES = 2
RETRY_BACKOFF_BASE_S = 0.01
RETRY_BACKOFF_CAP_S = 0.1

log = logging.getLogger(__name__)


def quick_retry() -> Retry:
    """Retry a failed command RETRIES times within ~RETRY_BACKOFF_CAP_S each: a restarting Redis is
    waited for briefly, a stopped one fails the request at once (redis-py's default backs off ~7 s)."""
    return Retry(ExponentialBackoff(cap=RETRY_BACKOFF_CAP_S, base=RETRY_BACKOFF_BASE_S), RETRIES)


def connect(address: str | tuple[str, int]) -> redis.Redis:
    """A client for Redis at a unix socket path or (host, port) (mirror.config.redis_address)."""
    common: dict[str, Any] = {"socket_timeout": REDIS_IO_TIMEOUT_S, "socket_connect_timeout": REDIS_IO_TIMEOUT_S,
                              "retry": quick_retry()}
    if isinstance(address, str):
        return redis.Redis(unix_socket_path=address, **common)
    host, port = address
    return redis.Redis(host=host, port=port, **common)


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22); None if no such
    process or it has died (a zombie, state Z or X, waiting for its parent to reap it, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
    except OSError:
        return None
    if len(fields) < 20 or fields[0] in ("Z", "X", "x"):
        return None
    return fields[19]


def owner_id() -> str:
    """This worker process: "host:pid:start-time:random" (pid + start time tell a reused pid apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid()) or 0}:{secrets.token_hex(4)}"


def process_alive(owner: str) -> bool | None:
    """Whether `owner`'s process still runs, when it ran on this host; None when it ran elsewhere (or /proc
    cannot tell): then only its lease in Redis can."""
    host, _, rest = owner.partition(":")
    pid_text, _, rest = rest.partition(":")
    started = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or started in ("", "0"):
        return None
    if int(pid_text) == os.getpid():
        return None        # another store of this very process (tests): its lease tells
    if not os.path.isdir("/proc/self"):
        return None
    return _start_time(int(pid_text)) == started


def _dump(rec: JobRecord) -> str:
    data = asdict(rec)
    data["stages"] = list(rec.stages)
    return json.dumps(data, separators=(",", ":"))


def _load(raw: bytes | None) -> JobRecord | None:
    if raw is None:
        return None
    data = json.loads(raw)
    data["stages"] = tuple(data.get("stages") or ())
    return JobRecord(**data)


class RedisJobStore(JobTransitions):
    """JobStore on Redis. Thread-safe (redis-py's pool); one per worker process (after fork).

    Args:
        client: a redis.Redis.
        ttl_s: how long jobs, results and idempotency keys are kept (limits.result_ttl_s).
        prefix: key prefix (tests give each app its own).
    """

    def __init__(self, client: redis.Redis, ttl_s: float, prefix: str = "vm:") -> None:
        if ttl_s <= 0:
            raise ValueError(f"RedisJobStore needs ttl_s > 0, got {ttl_s}")
        self.r: Any = client      # redis.Redis (typed Any: redis-py's stubs type replies as a union)
        self.ttl_s = float(ttl_s)
        self.prefix = prefix
        self.owner = owner_id()
        self._ttl_ms = max(int(self.ttl_s * 1000), 1)
        self._stop = threading.Event()
        self._changed = threading.Condition()    # this process changed a job: wake its waiters at once
        self._renew_lease()
        self._lease_thread = threading.Thread(target=self._lease_loop, name="redis-lease", daemon=True)
        self._lease_thread.start()

    # ------------------------------------------------------------------ keys
    def _job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def _result(self, job_id: str) -> str:
        return f"{self.prefix}result:{job_id}"

    def _lease(self, owner: str) -> str:
        return f"{self.prefix}lease:{owner}"

    # ------------------------------------------------------------------ lease of this process
    def _renew_lease(self) -> None:
        self.r.set(self._lease(self.owner), b"1", px=int(LEASE_TTL_S * 1000))

    def _lease_loop(self) -> None:
        while not self._stop.wait(LEASE_RENEW_S):
            try:
                self._renew_lease()
            except redis.RedisError as exc:
                log.warning("cannot renew this worker's lease in Redis: %s", exc)

    # ------------------------------------------------------------------ JobStore
    def create(self, rec: JobRecord, nbytes: int = 0) -> None:
        self.r.set(self._job(rec.id), _dump(replace(rec, owner=rec.owner or self.owner)), px=self._ttl_ms)

    def get(self, job_id: str) -> JobRecord | None:
        return _load(self.r.get(self._job(job_id)))

    def _update(self, job_id: str, change: Callable[[JobRecord], JobRecord], jpeg: bytes | None = None) -> bool:
        key = self._job(job_id)

        def txn(pipe: Any) -> bool:
            rec = _load(pipe.get(key))
            if rec is None or rec.finished:
                pipe.multi()
                return False
            new = change(rec)
            pipe.multi()
            if new.finished:   # a finished job (and its result) is kept ttl_s from now
                pipe.set(key, _dump(new), px=self._ttl_ms)
                if jpeg is not None:
                    pipe.set(self._result(job_id), jpeg, px=self._ttl_ms)
            else:
                pipe.set(key, _dump(new), keepttl=True)
            return True

        won: bool = self.r.transaction(txn, key, value_from_callable=True)
        if won:
            with self._changed:
                self._changed.notify_all()
        return won

    def result(self, job_id: str) -> bytes | None:
        data: bytes | None = self.r.get(self._result(job_id))
        return data

    def wait(self, job_id: str, until: Callable[[JobRecord], bool], timeout_s: float) -> JobRecord | None:
        end = time.monotonic() + max(timeout_s, 0.0)
        while True:
            rec = self.get(job_id)
            left = end - time.monotonic()
            if rec is None or until(rec) or left <= 0 or (not rec.finished and self.orphaned(rec)):
                return rec
            with self._changed:
                self._changed.wait(min(WAIT_POLL_S, left))

    def orphaned(self, rec: JobRecord) -> bool:
        """Whether the job's worker is gone: on this host, its process (pid and start time) no longer
        exists, known at once; on another host, its lease has expired (LEASE_TTL_S)."""
        if rec.finished or rec.owner == self.owner:
            return False
        local = process_alive(rec.owner)
        if local is not None:
            return not local
        return not self.r.exists(self._lease(rec.owner))

    def claim_key(self, key: str, job_id: str, replace_job: str | None = None) -> str | None:
        name = f"{self.prefix}idem:{key}"
        if replace_job is None:
            if self.r.set(name, job_id, nx=True, px=self._ttl_ms):
                return None
            current = self.r.get(name)
            if current is None:        # expired between the two commands: claim again
                return self.claim_key(key, job_id)
            return str(current.decode())

        def txn(pipe: Any) -> str | None:
            current = pipe.get(name)
            pipe.multi()
            if current is not None and current.decode() != replace_job:
                return str(current.decode())
            pipe.set(name, job_id, px=self._ttl_ms)
            return None

        taken: str | None = self.r.transaction(txn, name, value_from_callable=True)
        return taken

    def __len__(self) -> int:
        return sum(1 for _ in self.r.scan_iter(match=f"{self.prefix}job:*", count=SCAN_BATCH))

    def close(self) -> None:
        self._stop.set()
        try:
            self.r.delete(self._lease(self.owner))
        except redis.RedisError:
            pass
        self.r.close()
