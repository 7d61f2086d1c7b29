"""A pool of node 2s under load: routing overhead, shares, kill -9 failover, retried requests' latency.

    .venv/bin/python bench/pool_bench.py [--members 3] [--requests 60] [--clients 4] [--pairs 30]
                                         [--kills 2] [--json]

Needs root: the members are real node 2 roles (gvirtus backend, VITON, gateway) in network namespaces
made here, node 1 in the root namespace (tests/pool/cluster.py, the harness the tests use).

1. Routing overhead: in THIS process, two runners against the same node 2 (member 0): the direct one
   (the single node2 section) and the pool's (pool.members = that one node 2); `--pairs` try-ons each,
   alternating direct/pool, sequential. pool_routing_overhead_ratio = p50(pool) / p50(direct).
2. Shares: `--requests` try-ons over HTTPS from `--clients` clients; pool_share_min = the smallest
   member's share, counted by each node 2's gateway (gateway_requests_total).
3. Failover, `--kills` rounds: the same load; after a few results kill -9 every process of one member;
   pool_failover_s = kill -> node 1's /api/nodes shows it ejected (max over rounds, each listed); the
   member restarts and must rejoin before the next round. pool_retry_p95_ms = p95 of the retried
   requests' node-1 latency (GET /api/nodes recent_retries: every retry of the run).
pool_lost = try-ons without a 200 over phases 2 and 3 (target 0).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.faults.deployment import astronaut_jpeg  # noqa: E402
from tests.pool.cluster import PoolCluster, netns_unavailable  # noqa: E402
from tests.pool.test_pool_netns import Load  # noqa: E402

REQUEST_TIMEOUT_S = 60
MACHINE = "2-core AMD EPYC VM, no GPU"


def _p(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def routing_overhead(cluster: PoolCluster, pairs: int) -> dict[str, Any]:
    """Direct vs one-member pool, in this process, alternating (see the module docstring)."""
    from skimage import data

    from mirror.config import validate
    from node1.tryon.distributed import build_distributed
    from node1.tryon.pool_runner import PoolRunner

    photo = np.asarray(data.astronaut())
    base = json.loads(json.dumps(cluster.base))
    ns_ip = cluster.nets[0].ns_ip
    base["node2"]["host"] = ns_ip
    direct_cfg = dict(base, pool={"members": [], "dns": None, "registration_token_file": None})
    ports = {k: base["node2"][k] for k in ("gvirtus_port", "gateway_port", "health_port")}
    pool_cfg = dict(base, pool={"members": [{"name": "only", "host": ns_ip, **ports}], "dns": None,
                                "registration_token_file": None})
    direct, catalog = build_distributed(validate(direct_cfg, source="bench direct"))
    pooled, _ = build_distributed(validate(pool_cfg, source="bench pool"))
    assert isinstance(pooled, PoolRunner) and not isinstance(direct, PoolRunner)
    deadline = time.monotonic() + 30
    while not pooled.pool.members()[0].up and time.monotonic() < deadline:
        time.sleep(0.1)
    garment = catalog.list()[0].id
    times: dict[str, list[float]] = {"direct": [], "pool": []}
    for r in (direct, pooled):               # warm-up: sessions, module registration, garment cache
        r.run(photo, garment, lambda s, ms: None)
    for i in range(2 * pairs):
        name, runner = (("direct", direct), ("pool", pooled))[i % 2]
        t0 = time.perf_counter()
        runner.run(photo, garment, lambda s, ms: None)
        times[name].append((time.perf_counter() - t0) * 1000.0)
    pooled.close()
    ratio = statistics.median(times["pool"]) / statistics.median(times["direct"])
    pair_ratios = [p / d for d, p in zip(times["direct"], times["pool"], strict=True)]
    return {"pool_routing_overhead_ratio": round(ratio, 3),
            "routing_pair_ratio_median": round(statistics.median(pair_ratios), 3),
            "direct_p50_ms": _p(times["direct"], 50), "pool_p50_ms": _p(times["pool"], 50),
            "direct_p95_ms": _p(times["direct"], 95), "pool_p95_ms": _p(times["pool"], 95), "pairs": pairs}


def gateway_results(cluster: PoolCluster) -> dict[str, float]:
    out: dict[str, float] = {}
    port = cluster.base["node2"]["health_port"]
    for i, net in enumerate(cluster.nets):
        if cluster.node2[i] is None:
            continue
        with urllib.request.urlopen(f"http://{net.ns_ip}:{port}/metrics", timeout=10) as resp:  # noqa: S310
            text = resp.read().decode()
        out[cluster.member_name(i)] = sum(float(line.split()[-1]) for line in text.splitlines()
                                          if line.startswith("gateway_requests_total{")
                                          and 'kind="tryon"' in line and 'outcome="result"' in line)
    return out


def shares(cluster: PoolCluster, photo: bytes, garment: str, requests: int, clients: int) -> dict[str, Any]:
    before = gateway_results(cluster)
    t0 = time.monotonic()
    load = Load(cluster, photo, garment, clients=clients, total=requests)
    load.join(timeout_s=1200)
    wall = time.monotonic() - t0
    after = gateway_results(cluster)
    served = {n: after[n] - before.get(n, 0.0) for n in after}
    total = sum(served.values()) or 1.0
    lat = [s * 1000.0 for _, s in load.ok]
    return {"pool_share_min": round(min(served.values()) / total, 3), "served": served, "lost": len(load.failed),
            "failures": load.failed[:5], "ok": len(load.ok), "throughput_per_s": round(len(load.ok) / wall, 2),
            "p50_ms": _p(lat, 50), "p95_ms": _p(lat, 95)}


def failover(cluster: PoolCluster, photo: bytes, garment: str, kills: int, clients: int) -> dict[str, Any]:
    rounds: list[dict[str, Any]] = []
    lost, failures = 0, []
    for k in range(kills):
        victim = k % cluster.n
        load = Load(cluster, photo, garment, clients=clients, total=8 * clients)
        deadline = time.monotonic() + 120
        while len(load.ok) < clients + 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        t_kill = cluster.kill9(victim)
        cluster.wait(lambda d, v=victim: not (cluster.member(d, v) or {"eligible": False})["eligible"], 30,
                     "victim ejected", poll_s=0.02)
        ejected_s = time.monotonic() - t_kill
        load.join(timeout_s=600)
        lost += len(load.failed)
        failures += load.failed[:3]
        cluster.restart(victim)
        rejoin_s = cluster.wait(lambda d, v=victim: bool((cluster.member(d, v) or {}).get("eligible")), 240,
                                "victim rejoined")
        rounds.append({"victim": cluster.member_name(victim), "ejected_after_kill_s": round(ejected_s, 3),
                       "ok": len(load.ok), "lost": len(load.failed), "rejoined_after_restart_s": round(rejoin_s, 2)})
    doc = cluster.nodes()
    retried = [r["total_ms"] for r in doc["recent_retries"] if r["what"].startswith("try-on")]
    return {"pool_failover_s": max(float(r["ejected_after_kill_s"]) for r in rounds) if rounds else None,
            "pool_retry_p95_ms": _p(retried, 95), "retried_requests": len(retried), "retry_p50_ms": _p(retried, 50),
            "rounds": rounds, "lost": lost, "failures": failures}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--kills", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    why = netns_unavailable()
    if why:
        print(f"pool_bench: {why}", file=sys.stderr)
        return 2
    photo = astronaut_jpeg()
    result: dict[str, Any] = {"machine": MACHINE, "members": args.members, "clients": args.clients}
    with tempfile.TemporaryDirectory(prefix="vm-pool-") as tmp, \
            PoolCluster(Path(tmp), n=args.members, sources=("config",) * args.members,
                        overrides={"limits": {"request_timeout_s": REQUEST_TIMEOUT_S,
                                              "rate_limit_per_min": 100000}}) as cluster:
        assert cluster.client is not None
        garment = cluster.client.garments()[0]["id"]
        cluster.client.tryon(photo, garment)   # warm-up through the pool
        result["routing"] = routing_overhead(cluster, args.pairs)
        result["shares"] = shares(cluster, photo, garment, args.requests, args.clients)
        result["failover"] = failover(cluster, photo, garment, args.kills, args.clients)
    result.update(pool_lost=result["shares"]["lost"] + result["failover"]["lost"],
                  pool_failover_s=result["failover"]["pool_failover_s"],
                  pool_retry_p95_ms=result["failover"]["pool_retry_p95_ms"],
                  pool_routing_overhead_ratio=result["routing"]["pool_routing_overhead_ratio"],
                  pool_share_min=result["shares"]["pool_share_min"],
                  loadavg_1m_end=round(os.getloadavg()[0], 2))
    met = (result["pool_lost"] == 0 and (result["pool_failover_s"] or 99) <= 3.0
           and result["pool_routing_overhead_ratio"] <= 1.05 and result["pool_share_min"] >= 0.2)
    if args.json:
        print(json.dumps(result))
    else:
        for key in ("pool_lost", "pool_failover_s", "pool_retry_p95_ms", "pool_routing_overhead_ratio",
                    "pool_share_min"):
            print(f"{key}: {result[key]}")
        print(json.dumps({k: result[k] for k in ("routing", "shares", "failover")}, indent=2))
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
