"""What the job store costs a try-on: the embedded MemoryJobStore against RedisJobStore (real
redis-server on a unix socket), in one process, rounds alternating between the two.

    .venv/bin/python bench/store_bench.py [--jobs 300] [--rounds 6] [--json]

One job's store traffic, as node1.web.jobs makes it: create, set_running, 4 x add_stage, finish with a
RESULT_BYTES JPEG-sized result, then the reads of a shopper (get, result). `*_job_ms` is the wall time
of that whole sequence per job. `*_wake_ms`: a thread waiting for the job to finish (as the
synchronous POST and the SSE stream do) until it sees the finish made in this process.
Percentiles: numpy.percentile (bench.common.pct) over ALL jobs of all rounds; failures would raise
(none are expected). The Redis baseline is measured in the same run on the same machine.
`--json` keys: memory_job_p50_ms, memory_job_p95_ms, memory_job_p99_ms, redis_job_p50_ms,
redis_job_p95_ms, redis_job_p99_ms, redis_vs_memory_p50_ratio, memory_wake_p50_ms, memory_wake_p99_ms,
redis_wake_p50_ms, redis_wake_p99_ms, jobs_per_store.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import pct  # noqa: E402
from mirror.redis_server import ping, prepare_socket_dir, redis_argv  # noqa: E402
from node1.web.jobstore import JobRecord, JobStore, MemoryJobStore  # noqa: E402
from node1.web.redisstore import RedisJobStore, connect  # noqa: E402

RESULT_BYTES = 40_000          # a 512x512 try-on result as JPEG is ~30-50 kB
STAGES = ("pose", "parsing", "transfer", "tryon")
TTL_S = 600.0
START_TIMEOUT_S = 10.0


def one_job(store: JobStore, jpeg: bytes) -> tuple[float, float]:
    """(sequence ms, wake ms) of one job's store traffic."""
    job_id = secrets.token_urlsafe(16)
    woke: list[float] = []
    t0 = time.perf_counter()
    store.create(JobRecord(id=job_id, garment_id="g", deadline=time.time() + 60), nbytes=1 << 20)
    def wait_for_finish() -> None:
        store.wait(job_id, lambda r: r.finished, 10)
        woke.append(time.perf_counter())

    waiter = threading.Thread(target=wait_for_finish)
    waiter.start()
    store.set_running(job_id)
    for stage in STAGES:
        store.add_stage(job_id, stage, 1.0)
    t_finish = time.perf_counter()
    store.finish(job_id, {"id": job_id}, jpeg)
    rec = store.get(job_id)
    data = store.result(job_id)
    t1 = time.perf_counter()
    waiter.join()
    if rec is None or rec.state != "done" or data != jpeg or not woke:
        raise RuntimeError(f"the {type(store).__name__} lost job {job_id}")
    return (t1 - t0) * 1000.0, (woke[0] - t_finish) * 1000.0


def start_redis(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (Debian package redis-server)")
    sock = work / "s" / "redis.sock"
    prepare_socket_dir(sock)
    proc = subprocess.Popen(redis_argv(str(sock), 512, binary, work), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT_S
    while not ping(str(sock)):
        if time.monotonic() > deadline:
            proc.kill()
            sys.exit("redis-server did not start")
        time.sleep(0.02)
    return proc, str(sock)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=300, help="jobs per store per round")
    ap.add_argument("--rounds", type=int, default=6, help="alternating rounds (memory, redis, memory, ...)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    jpeg = os.urandom(RESULT_BYTES)
    samples: dict[str, dict[str, list[float]]] = {k: {"job": [], "wake": []} for k in ("memory", "redis")}
    with tempfile.TemporaryDirectory() as tmp:
        proc, sock = start_redis(Path(tmp))
        try:
            stores: dict[str, Any] = {"memory": MemoryJobStore(ttl_s=TTL_S),
                                      "redis": RedisJobStore(connect(sock), ttl_s=TTL_S, prefix="bench:")}
            for store in stores.values():          # warm-up (connections, code paths)
                for _ in range(20):
                    one_job(store, jpeg)
            for rnd in range(args.rounds):
                for name in (("memory", "redis") if rnd % 2 == 0 else ("redis", "memory")):
                    for _ in range(args.jobs):
                        job_ms, wake_ms = one_job(stores[name], jpeg)
                        samples[name]["job"].append(job_ms)
                        samples[name]["wake"].append(wake_ms)
            for store in stores.values():
                store.close()
        finally:
            proc.terminate()
            proc.wait()
    out: dict[str, Any] = {"jobs_per_store": len(samples["memory"]["job"])}
    for name in ("memory", "redis"):
        for q in (50, 95, 99):
            out[f"{name}_job_p{q}_ms"] = round(pct(samples[name]["job"], q), 3)
        for q in (50, 99):
            out[f"{name}_wake_p{q}_ms"] = round(pct(samples[name]["wake"], q), 3)
    out["redis_vs_memory_p50_ratio"] = round(out["redis_job_p50_ms"] / out["memory_job_p50_ms"], 2)
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:28} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
