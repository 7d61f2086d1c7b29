"""Bounded load run: N concurrent shoppers for M minutes over HTTPS against a LOCAL deployment.

    .venv/bin/python bench/load_bench.py [--shoppers 4] [--minutes 1] [--json]

Starts the deployment with start_application.sh on free loopback ports (its own config, tokens
and var dir), warms it up (first remote preprocessing registers the models on gvirtus), then:
  1. baseline: one shopper, BASELINE_REQUESTS sequential try-ons (same run, same machine);
  2. load: N shopper threads, each from its own loopback address (127.0.1.<i>: the rate limiter
     counts clients by address), each looping POST /api/tryon (astronaut photo, a random demo
     garment) then GET the result, for M minutes.
Every request ends in exactly one outcome, counted: "ok" (200 and the result JPEG fetched), an
API error by its JSON code ("node2_unavailable", "rate_limited", ...), or a transport failure
("unreachable:<exception>"). "lost" counts the rest (a 200 whose result cannot be fetched, a
reply that is not the JSON contract): the requirement is lost == 0.
Memory: rss and open fds of every process (supervisor, gvirtus, VITON, gateway, gunicorn arbiter
and worker) after warm-up and at the end; growth must stay under RSS_GROWTH_BOUND_MB and
FD_GROWTH_BOUND per process. `--json` keys: throughput_per_s, p50_ms, p95_ms, p99_ms, requests,
ok, lost, errors_by_kind, baseline_p50_ms, p50_ratio_vs_baseline, processes, bounds_held.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import ssl
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from node1.cli.http_client import encode_multipart  # noqa: E402
from tests.faults.deployment import Deployment, astronaut_jpeg  # noqa: E402

BASELINE_REQUESTS = 8
WARMUP_TIMEOUT_S = 240.0
REQUEST_TIMEOUT_S = 90.0          # client side; the server's limits.request_timeout_s is below it
SERVER_REQUEST_TIMEOUT_S = 60
RSS_GROWTH_BOUND_MB = 150.0       # per process, end vs after warm-up
FD_GROWTH_BOUND = 16              # per process


@dataclass
class Outcomes:
    """Thread-safe tally of request outcomes and latencies."""

    latencies_ms: list[float] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    events: list[tuple[float, str, float, str]] = field(default_factory=list)   # (t end, kind, ms, device)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, ms: float, lost: bool = False, device: str = "") -> None:
        with self.lock:
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            self.lost += int(lost)
            self.events.append((time.monotonic(), kind, ms, device))
            if kind == "ok":
                self.latencies_ms.append(ms)

    @property
    def requests(self) -> int:
        return sum(self.kinds.values())


class Shopper:
    """One HTTPS client from its own loopback source address."""

    def __init__(self, dep: Deployment, source: str, photo: bytes, garments: list[str], seed: int) -> None:
        port = int(dep.cfg["node1"]["https_port"])
        cafile = Path(dep.cfg["paths"]["var_dir"]) / "tls" / "node1.crt"
        self.ctx = ssl.create_default_context(cafile=str(cafile))
        self.addr, self.source = ("127.0.0.1", port), source
        self.photo, self.garments = photo, garments
        self.rng = random.Random(seed)

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPSConnection(*self.addr, context=self.ctx, timeout=REQUEST_TIMEOUT_S,
                                           source_address=(self.source, 0))
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def tryon_once(self) -> tuple[str, float, bool, dict[str, Any] | None]:
        """(outcome kind, latency ms, lost?, response doc)."""
        body, ctype = encode_multipart({"garment": self.rng.choice(self.garments)}, {"photo": ("p.jpg", self.photo)})
        t0 = time.perf_counter()
        try:
            status, hdrs, data = self._request("POST", "/api/tryon", body, {"Content-Type": ctype})
        except (OSError, http.client.HTTPException) as exc:
            return f"unreachable:{type(exc).__name__}", (time.perf_counter() - t0) * 1000, False, None
        ms = (time.perf_counter() - t0) * 1000
        try:
            doc = json.loads(data)
        except ValueError:
            return f"http_{status}_not_json", ms, True, None
        if status != 200:
            code = doc.get("error", {}).get("code") if isinstance(doc, dict) else None
            return (str(code), ms, False, doc) if code else (f"http_{status}_no_code", ms, True, doc)
        try:
            st, hdrs, jpeg = self._request("GET", doc["result_url"])
        except (OSError, http.client.HTTPException, KeyError):
            return "result_unfetchable", ms, True, doc
        if st != 200 or not jpeg.startswith(b"\xff\xd8"):
            return "result_unfetchable", ms, True, doc
        return "ok", ms, False, doc

    def run(self, out: Outcomes, until: float, stop: threading.Event | None = None) -> None:
        while time.monotonic() < until and not (stop and stop.is_set()):
            kind, ms, lost, doc = self.tryon_once()
            out.add(kind, ms, lost, str((doc or {}).get("device", "")) if kind == "ok" else "")
            if kind.startswith("unreachable") or kind in ("node2_unavailable", "busy", "rate_limited"):
                time.sleep(0.2)          # a real shopper does not hammer a failing service


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q / 100 * len(s)))], 1)


def run_load(dep: Deployment, shoppers: int, seconds: float, photo: bytes, garments: list[str],
             out: Outcomes | None = None, stop: threading.Event | None = None) -> Outcomes:
    out = out or Outcomes()
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=Shopper(dep, f"127.0.1.{i + 1}", photo, garments, seed=i).run,
                                args=(out, until, stop), daemon=True) for i in range(shoppers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + REQUEST_TIMEOUT_S * 2)
    return out


def warm_up(dep: Deployment, photo: bytes, garments: list[str]) -> float:
    """Until one try-on's preprocessing ran on the remote device; returns the seconds it took."""
    shopper = Shopper(dep, "127.0.1.250", photo, garments, seed=99)
    t0 = time.monotonic()
    while time.monotonic() - t0 < WARMUP_TIMEOUT_S:
        kind, _, _, doc = shopper.tryon_once()
        if kind == "ok" and doc and str(doc.get("device", "")).startswith("gvirtus:"):
            return time.monotonic() - t0
    raise RuntimeError(f"no remote try-on within {WARMUP_TIMEOUT_S} s:\n{dep.tail()}")


def garment_ids(dep: Deployment, photo: bytes) -> list[str]:
    s = Shopper(dep, "127.0.1.251", photo, [], seed=0)
    return [g["id"] for g in json.loads(s._request("GET", "/api/garments")[2])["garments"]]


def process_growth(start: dict[str, dict], end: dict[str, dict]) -> tuple[dict[str, Any], bool]:
    table, held = {}, True
    for name in sorted(set(start) | set(end)):
        a, b = start.get(name), end.get(name)
        row: dict[str, Any] = {"start": a, "end": b}
        if a and b and a["pid"] == b["pid"]:
            row["rss_growth_mb"] = round(b["rss_mb"] - a["rss_mb"], 1)
            row["fd_growth"] = b["fds"] - a["fds"]
            held &= row["rss_growth_mb"] <= RSS_GROWTH_BOUND_MB and row["fd_growth"] <= FD_GROWTH_BOUND
        else:
            row["note"] = "process replaced or gone"
            held = False
        table[name] = row
    return table, held


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shoppers", type=int, default=4)
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    photo = astronaut_jpeg()
    with tempfile.TemporaryDirectory(prefix="vm-load-") as tmp:
        dep = Deployment.start(Path(tmp), limits={"request_timeout_s": SERVER_REQUEST_TIMEOUT_S})
        try:
            garments = garment_ids(dep, photo)
            warm_s = warm_up(dep, photo, garments)
            base = Outcomes()
            one = Shopper(dep, "127.0.1.200", photo, garments, seed=7)
            for _ in range(BASELINE_REQUESTS):
                kind, ms, lost, _ = one.tryon_once()
                base.add(kind, ms, lost)
            start_stats = dep.process_stats()
            t0 = time.monotonic()
            out = run_load(dep, args.shoppers, args.minutes * 60, photo, garments)
            wall = time.monotonic() - t0
            end_stats = dep.process_stats()
        finally:
            dep.stop()
    procs, held = process_growth(start_stats, end_stats)
    lat = out.latencies_ms
    base_p50 = statistics.median(base.latencies_ms) if base.latencies_ms else None
    p50 = pct(lat, 50)
    result = {
        "shoppers": args.shoppers, "minutes": args.minutes, "wall_s": round(wall, 1), "warmup_s": round(warm_s, 1),
        "requests": out.requests, "ok": out.kinds.get("ok", 0), "lost": out.lost,
        "errors_by_kind": {k: v for k, v in sorted(out.kinds.items()) if k != "ok"},
        "throughput_per_s": round(out.kinds.get("ok", 0) / wall, 3) if wall else 0.0,
        "p50_ms": p50, "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99), "max_ms": pct(lat, 100),
        "baseline_requests": base.requests, "baseline_ok": base.kinds.get("ok", 0),
        "baseline_p50_ms": round(base_p50, 1) if base_p50 else None,
        "baseline_throughput_per_s": round(1000.0 / base_p50, 3) if base_p50 else None,
        "p50_ratio_vs_baseline": round(p50 / base_p50, 2) if p50 and base_p50 else None,
        "processes": procs, "rss_growth_bound_mb": RSS_GROWTH_BOUND_MB, "fd_growth_bound": FD_GROWTH_BOUND,
        "bounds_held": held and out.lost == 0, "cpus": os.cpu_count(),
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
    }
    if args.json:
        print(json.dumps(result))
        return 0 if result["bounds_held"] else 1
    print(f"load: {args.shoppers} shoppers x {args.minutes:g} min over HTTPS (LOCAL deployment, {os.cpu_count()} CPUs, "
          f"load avg {result['loadavg_1m_end']})")
    print(f"{'measure':<34}{'load':>12}{'baseline (1 shopper)':>24}{'ratio':>8}")
    print(f"{'try-ons ok / requests':<34}{result['ok']:>6} / {result['requests']:<5}"
          f"{result['baseline_ok']:>14} / {result['baseline_requests']:<8}")
    base_tp = result["baseline_throughput_per_s"]
    tp_ratio = result["throughput_per_s"] / base_tp if base_tp else 0.0
    print(f"{'throughput, try-ons/s':<34}{result['throughput_per_s']:>12}{base_tp!s:>24}{tp_ratio:>8.2f}")
    print(f"{'p50 / p95 / p99 ms':<34}{p50!s:>8} / {result['p95_ms']} / {result['p99_ms']}"
          f"{result['baseline_p50_ms']!s:>14}{result['p50_ratio_vs_baseline']!s:>8}")
    print(f"errors by kind: {result['errors_by_kind'] or 'none'}; lost: {out.lost}")
    print(f"{'process':<22}{'rss MB start':>13}{'end':>8}{'fds start':>11}{'end':>6}")
    for name, row in procs.items():
        a, b = row["start"] or {}, row["end"] or {}
        print(f"{name:<22}{a.get('rss_mb', '-')!s:>13}{b.get('rss_mb', '-')!s:>8}{a.get('fds', '-')!s:>11}"
              f"{b.get('fds', '-')!s:>6}  {row.get('note', '')}")
    print(f"bounds (rss +{RSS_GROWTH_BOUND_MB:g} MB, fds +{FD_GROWTH_BOUND} per process, lost == 0): "
          f"{'held' if result['bounds_held'] else 'NOT held'}")
    return 0 if result["bounds_held"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
