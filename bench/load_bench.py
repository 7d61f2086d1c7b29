"""Bounded load run: N concurrent shoppers for M minutes over HTTPS against a LOCAL deployment.

    .venv/bin/python bench/load_bench.py [--shoppers 4] [--minutes 1] [--max-requests N] [--json]

Starts the deployment with start_application.sh on free loopback ports (its own config, tokens
and var dir), warms it up (first remote preprocessing registers the models on gvirtus), then:
  1. baseline: one shopper, BASELINE_REQUESTS sequential try-ons (same run, same machine);
  2. load: N shopper threads, each from its own loopback address (127.0.1.<i>: the rate limiter
     counts clients by address), each looping POST /api/tryon (astronaut photo, a random demo
     garment) then GET the result, for M minutes (or until --max-requests requests were made).
Every request ends in exactly one outcome, counted by code:
  "ok"                  200 and the result JPEG fetched;
  an API error code     the JSON error's code ("node2_unavailable", "rate_limited", ...);
  "no_response:<exc>"   no HTTP response at all (connection refused / reset / closed, client
                        timeout): these are the LOST requests (`lost`);
  "contract:<what>"     a response that breaks the API contract (a 200 whose result cannot be
                        fetched, a body that is not JSON, an error without a code): `contract_broken`.
Latency = POST /api/tryon until its response (or until the failure), for EVERY request: p50/p95/p99
are numpy.percentile (linear interpolation, bench.common.pct) over all requests, failures included;
the same percentiles over the successful ones (ok_*) and the failed ones (failed_*) are reported
beside them, with the counts by code and by HTTP status. Required: lost == 0, contract_broken == 0.
Memory: rss and open fds of every process (supervisor, gvirtus, VITON, gateway, gunicorn arbiter
and worker) after warm-up and at the end; growth must stay under RSS_GROWTH_BOUND_MB and
FD_GROWTH_BOUND per process. `--json` keys: throughput_per_s; p50_ms, p95_ms, p99_ms, max_ms (all
requests); ok_p50_ms .. ok_p99_ms; failed_p50_ms .. failed_p99_ms; requests, ok, success_rate, lost,
lost_by_cause, contract_broken, errors_by_code (every outcome but ok, by code; errors_by_kind is the
same dict under its older name), responses_by_status; baseline_p50_ms (all baseline requests),
baseline_ok, p50_ratio_vs_baseline; processes, bounds_held.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import ssl
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import pct  # noqa: E402
from node1.cli.http_client import encode_multipart  # noqa: E402
from tests.faults.deployment import Deployment, astronaut_jpeg  # noqa: E402

BASELINE_REQUESTS = 8
WARMUP_TIMEOUT_S = 240.0
REQUEST_TIMEOUT_S = 90.0          # client side; the server's limits.request_timeout_s is below it
SERVER_REQUEST_TIMEOUT_S = 60
RSS_GROWTH_BOUND_MB = 150.0       # per process, end vs after warm-up
FD_GROWTH_BOUND = 16              # per process
FAILURE_PAUSE_S = 0.2             # a real shopper does not hammer a failing service
NO_RESPONSE = "no_response:"      # outcome prefix: the request got no HTTP response (lost)
CONTRACT = "contract:"            # outcome prefix: a response that breaks the API contract


@dataclass
class Outcomes:
    """Thread-safe tally of request outcomes (by code) and the latency of every request."""

    latencies_ms: list[float] = field(default_factory=list)       # every request, failures included
    ok_ms: list[float] = field(default_factory=list)
    failed_ms: list[float] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)           # outcome code -> count
    statuses: dict[str, int] = field(default_factory=dict)        # HTTP status ("none": no response) -> count
    events: list[tuple[float, str, float, str]] = field(default_factory=list)   # (t end, kind, ms, device)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, ms: float, status: int | None = None, device: str = "") -> None:
        with self.lock:
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            key = str(status) if status is not None else "none"
            self.statuses[key] = self.statuses.get(key, 0) + 1
            self.events.append((time.monotonic(), kind, ms, device))
            self.latencies_ms.append(ms)
            (self.ok_ms if kind == "ok" else self.failed_ms).append(ms)

    @property
    def requests(self) -> int:
        with self.lock:
            return sum(self.kinds.values())

    @property
    def lost(self) -> int:
        """Requests that got no HTTP response at all."""
        with self.lock:
            return sum(n for k, n in self.kinds.items() if k.startswith(NO_RESPONSE))

    @property
    def contract_broken(self) -> int:
        with self.lock:
            return sum(n for k, n in self.kinds.items() if k.startswith(CONTRACT))


def latency_summary(all_ms: list[float], ok_ms: list[float], failed_ms: list[float]) -> dict[str, float | None]:
    """p50/p95/p99 (numpy.percentile, linear) over all requests, and the same over the ok and failed ones."""
    out: dict[str, float | None] = {}
    for prefix, values in (("", all_ms), ("ok_", ok_ms), ("failed_", failed_ms)):
        for q in (50, 95, 99):
            out[f"{prefix}p{q}_ms"] = round(pct(values, q), 1) if values else None
    out["max_ms"] = round(max(all_ms), 1) if all_ms else None
    return out


def served_by_device(out: Outcomes) -> dict[str, int]:
    """Successful try-ons by the device their preprocessing ran on ("gvirtus:...", "cpu (local fallback)")."""
    with out.lock:
        devices = [device for _, kind, _, device in out.events if kind == "ok"]
    return {d: devices.count(d) for d in sorted(set(devices))}


def errors_of(kinds: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in sorted(kinds.items()) if k != "ok"}


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

    def tryon_once(self) -> tuple[str, float, int | None, dict[str, Any] | None]:
        """(outcome code, latency ms, HTTP status or None, response doc)."""
        body, ctype = encode_multipart({"garment": self.rng.choice(self.garments)}, {"photo": ("p.jpg", self.photo)})
        t0 = time.perf_counter()
        try:
            status, _, data = self._request("POST", "/api/tryon", body, {"Content-Type": ctype})
        except (OSError, http.client.HTTPException) as exc:
            return f"{NO_RESPONSE}{type(exc).__name__}", (time.perf_counter() - t0) * 1000, None, None
        ms = (time.perf_counter() - t0) * 1000
        try:
            doc = json.loads(data)
        except ValueError:
            return f"{CONTRACT}http_{status}_not_json", ms, status, None
        if status != 200:
            code = doc.get("error", {}).get("code") if isinstance(doc, dict) else None
            return (str(code), ms, status, doc) if code else (f"{CONTRACT}http_{status}_no_code", ms, status, doc)
        try:
            st, _, jpeg = self._request("GET", doc["result_url"])
        except (OSError, http.client.HTTPException, KeyError):
            return f"{CONTRACT}result_unfetchable", ms, status, doc
        if st != 200 or not jpeg.startswith(b"\xff\xd8"):
            return f"{CONTRACT}result_unfetchable", ms, status, doc
        return "ok", ms, status, doc

    def run(self, out: Outcomes, until: float, stop: threading.Event | None = None,
            max_requests: int | None = None) -> None:
        while time.monotonic() < until and not (stop and stop.is_set()):
            if max_requests is not None and out.requests >= max_requests:
                return
            kind, ms, status, doc = self.tryon_once()
            out.add(kind, ms, status, str((doc or {}).get("device", "")) if kind == "ok" else "")
            if kind.startswith(NO_RESPONSE) or kind in ("node2_unavailable", "busy", "rate_limited"):
                time.sleep(FAILURE_PAUSE_S)


def run_load(dep: Deployment, shoppers: int, seconds: float, photo: bytes, garments: list[str],
             out: Outcomes | None = None, stop: threading.Event | None = None,
             max_requests: int | None = None) -> Outcomes:
    out = out or Outcomes()
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=Shopper(dep, f"127.0.1.{i + 1}", photo, garments, seed=i).run,
                                args=(out, until, stop, max_requests), daemon=True) for i in range(shoppers)]
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
    ap.add_argument("--max-requests", type=int, default=None, help="stop the load phase after this many requests")
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
                kind, ms, status, doc = one.tryon_once()
                base.add(kind, ms, status, str((doc or {}).get("device", "")) if kind == "ok" else "")
            start_stats = dep.process_stats()
            t0 = time.monotonic()
            out = run_load(dep, args.shoppers, args.minutes * 60, photo, garments, max_requests=args.max_requests)
            wall = time.monotonic() - t0
            end_stats = dep.process_stats()
        finally:
            dep.stop()
    procs, held = process_growth(start_stats, end_stats)
    lat = latency_summary(out.latencies_ms, out.ok_ms, out.failed_ms)
    base_p50 = round(pct(base.latencies_ms, 50), 1) if base.latencies_ms else None
    p50 = lat["p50_ms"]
    errors = errors_of(out.kinds)
    ok = out.kinds.get("ok", 0)
    result = {
        "shoppers": args.shoppers, "minutes": args.minutes, "max_requests": args.max_requests,
        "wall_s": round(wall, 1), "warmup_s": round(warm_s, 1),
        "requests": out.requests, "ok": ok, "success_rate": round(ok / out.requests, 4) if out.requests else None,
        "lost": out.lost, "lost_by_cause": {k: v for k, v in errors.items() if k.startswith(NO_RESPONSE)},
        "contract_broken": out.contract_broken,
        "errors_by_code": errors, "errors_by_kind": errors,
        "responses_by_status": dict(sorted(out.statuses.items())),
        "latency_over": "all requests, failures included (ok_* and failed_* beside)",
        "throughput_per_s": round(ok / wall, 3) if wall else 0.0,
        **lat,
        "baseline_requests": base.requests, "baseline_ok": base.kinds.get("ok", 0),
        "baseline_errors_by_code": errors_of(base.kinds), "baseline_p50_ms": base_p50,
        "baseline_throughput_per_s": round(1000.0 / base_p50, 3) if base_p50 else None,
        "p50_ratio_vs_baseline": round(p50 / base_p50, 2) if p50 and base_p50 else None,
        "served_by_device": served_by_device(out), "baseline_served_by_device": served_by_device(base),
        "processes": procs, "rss_growth_bound_mb": RSS_GROWTH_BOUND_MB, "fd_growth_bound": FD_GROWTH_BOUND,
        "bounds_held": held and out.lost == 0 and out.contract_broken == 0, "cpus": os.cpu_count(),
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
    print(f"{'p50 / p95 / p99 ms, all requests':<34}{p50!s:>8} / {result['p95_ms']} / {result['p99_ms']}"
          f"{result['baseline_p50_ms']!s:>14}{result['p50_ratio_vs_baseline']!s:>8}")
    print(f"{'  successful only':<34}{result['ok_p50_ms']!s:>8} / {result['ok_p95_ms']} / {result['ok_p99_ms']}")
    print(f"{'  failed only':<34}{result['failed_p50_ms']!s:>8} / {result['failed_p95_ms']} / "
          f"{result['failed_p99_ms']}")
    print(f"errors by code: {errors or 'none'}; responses by HTTP status: {result['responses_by_status']}")
    print(f"lost (no response): {out.lost}; contract broken: {out.contract_broken}")
    print(f"served by device: {result['served_by_device']} (baseline {result['baseline_served_by_device']})")
    print(f"{'process':<22}{'rss MB start':>13}{'end':>8}{'fds start':>11}{'end':>6}")
    for name, row in procs.items():
        a, b = row["start"] or {}, row["end"] or {}
        print(f"{name:<22}{a.get('rss_mb', '-')!s:>13}{b.get('rss_mb', '-')!s:>8}{a.get('fds', '-')!s:>11}"
              f"{b.get('fds', '-')!s:>6}  {row.get('note', '')}")
    print(f"bounds (rss +{RSS_GROWTH_BOUND_MB:g} MB, fds +{FD_GROWTH_BOUND} per process, lost == 0, "
          "contract broken == 0): "
          f"{'held' if result['bounds_held'] else 'NOT held'}")
    return 0 if result["bounds_held"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
