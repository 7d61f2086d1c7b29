"""End-to-end try-on over HTTPS against the LOCAL deployment (start_application.sh), and the bytes
that cross to node 2 per try-on, measured on the wire.

    .venv/bin/python bench/e2e_bench.py [--requests 12] [--concurrent 8] [--rounds 3] [--json]

Same run, in this order:
1. Direct: a LOCAL deployment; sequential requests (after 2 warm-ups), then `--concurrent` clients
   at once for `--rounds` rounds, each POSTing the 768x1024 photo (JPEG) with a demo garment to
   /api/tryon and downloading the result. Percentiles (numpy.percentile, linear) over ALL requests;
   failures are counted beside them (`e2e_failures`), never dropped from the count.
2. Proxied: the same deployment layout, but node 1 reaches node 2 (gvirtus control, gvirtus data
   channel, gateway) through testing.faultproxy TCP proxies: node 2's processes bind 127.0.0.1 and
   node 1 is told node2.host = 127.0.0.2, where one proxy per port forwards to them. The proxies
   count the bytes node 1 sends (`bytes_to_node2_per_tryon`: gvirtus + transport, on the wire),
   then throttle every link to 1 Gbit/s per direction for `e2e_1gbit_p50_ms`.
3. Baseline (inside step 1, the deployment idle): the in-process runner (node1.tryon.in_process:
   the same request path minus the wire, in this process; no HTTPS), `in_process_ms`. Like the web
   app's runners it asks for the result as the shopper's JPEG (node1.tryon.RESULT_JPEG_QUALITY), so the
   encode is inside both measures (before the result-format change the baseline returned raw pixels and
   the web app's encode counted as distribution overhead).

--json keys: e2e_p50_ms, e2e_p95_ms, e2e_p99_ms, e2e_failures, e2e_concurrent_p50_ms,
e2e_concurrent_p95_ms, e2e_throughput_per_s, concurrent_clients, in_process_ms,
bytes_to_node2_per_tryon, bytes_gvirtus_per_tryon, bytes_transport_per_tryon, photo_bytes,
bytes_from_node2_per_tryon (the other direction, all three links: it crosses the 1 Gbit/s link too),
e2e_1gbit_p50_ms, device, stage_<name>_ms.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.common import photo, service_allocator, table  # noqa: E402
from node1.cli.http_client import WebClient  # noqa: E402
from testing.deployment import LocalDeployment  # noqa: E402
from testing.faultproxy import FaultProxy  # noqa: E402

# CLEVER virtual mirror, the system this re-creates: OpenPose 16.5 s + human parsing 7.9 s per image through
# GVirtuS, then VITON-HD (the team's design notes, "Anchors"): more than 25 s per photo.
ORIGINAL_MS = 25000.0
STAGES = ("pose", "parsing", "transfer", "tryon")
GBIT_BPS = 1e9 / 8               # 1 Gbit/s in bytes per second
NODE2_HOST, PROXY_HOST = "127.0.0.1", "127.0.0.2"
WARMUP = 2
CLIENT_TIMEOUT_S = 900


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples, np.float64), q)) if samples else float("nan")


def one(client: WebClient, body: bytes, gid: str) -> tuple[float, dict[str, float] | None, str]:
    """(ms, timings or None, device or the error) of one try-on, result downloaded."""
    t0 = time.perf_counter()
    try:
        out = client.tryon(body, gid)
        client.result(out["result_url"])
    except Exception as exc:  # noqa: BLE001 - a failure is a measured outcome
        return (time.perf_counter() - t0) * 1000.0, None, f"{type(exc).__name__}: {exc}"
    return (time.perf_counter() - t0) * 1000.0, out["timings_ms"], str(out["device"])


def overrides(concurrent: int) -> dict[str, Any]:
    return {"limits": {"rate_limit_per_min": 1000000, "request_timeout_s": 600}, "node1": {"workers": concurrent}}


def direct(body: bytes, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, LocalDeployment(tmp, overrides=overrides(args.concurrent)) as dep:
        client = WebClient(dep.url, cafile=dep.cafile, timeout_s=CLIENT_TIMEOUT_S)
        gid = next(g["id"] for g in client.garments() if "red" in g["name"].lower())
        for _ in range(WARMUP):
            one(client, body, gid)
        seq = [one(client, body, gid) for _ in range(args.requests)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.concurrent) as pool:
            conc = list(pool.map(lambda _: one(client, body, gid), range(args.concurrent * args.rounds)))
        wall = time.perf_counter() - t0
        # the baseline, with the deployment idle: its config (catalog, engine) is the deployment's
        base_ms = in_process_ms(body, dep.config_path, max(5, args.requests // 2))
    ok_seq = [t for _, t, _ in seq if t is not None]
    res = {
        "e2e_p50_ms": _pct([ms for ms, _, _ in seq], 50), "e2e_p95_ms": _pct([ms for ms, _, _ in seq], 95),
        "e2e_p99_ms": _pct([ms for ms, _, _ in seq], 99),
        "e2e_failures": sum(t is None for _, t, _ in seq) + sum(t is None for _, t, _ in conc),
        "e2e_concurrent_p50_ms": _pct([ms for ms, _, _ in conc], 50),
        "e2e_concurrent_p95_ms": _pct([ms for ms, _, _ in conc], 95),
        "e2e_throughput_per_s": sum(t is not None for _, t, _ in conc) / wall,
        "concurrent_clients": args.concurrent, "device": seq[-1][2] if seq else "none", "in_process_ms": base_ms,
        **{f"stage_{s}_ms": statistics.median(t.get(s, 0.0) for t in ok_seq) if ok_seq else float("nan")
           for s in STAGES},
    }
    return res


@contextlib.contextmanager
def proxied_deployment(work: str, concurrent: int) -> Iterator[tuple[LocalDeployment, dict[str, FaultProxy]]]:
    """A LOCAL deployment whose node 1 reaches node 2 only through byte-counting proxies (see the docstring)."""
    ov = overrides(concurrent)
    ov["node2"] = {"host": PROXY_HOST, "bind_host": NODE2_HOST}
    dep = LocalDeployment(work, overrides=ov)
    n2 = dep.config["node2"]
    ports = {"gvirtus": n2["gvirtus_port"], "gvirtus_data": n2["gvirtus_data_port"], "gateway": n2["gateway_port"]}
    proxies = {name: FaultProxy((NODE2_HOST, port), listen=(PROXY_HOST, port)) for name, port in ports.items()}
    with contextlib.ExitStack() as stack:
        for p in proxies.values():
            stack.enter_context(p)
        stack.enter_context(dep)
        yield dep, proxies


def proxied(body: bytes, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, proxied_deployment(tmp, args.concurrent) as (dep, proxies):
        client = WebClient(dep.url, cafile=dep.cafile, timeout_s=CLIENT_TIMEOUT_S)
        gid = next(g["id"] for g in client.garments() if "red" in g["name"].lower())
        for _ in range(WARMUP):  # sessions open, modules registered, the garment cached on node 2
            one(client, body, gid)
        before = {k: (p.stats().bytes_up, p.stats().bytes_down) for k, p in proxies.items()}
        counted = [one(client, body, gid) for _ in range(args.requests)]
        up = {k: (p.stats().bytes_up - before[k][0]) / len(counted) for k, p in proxies.items()}
        down = sum(p.stats().bytes_down - before[k][1] for k, p in proxies.items()) / len(counted)
        for p in proxies.values():
            p.set(bandwidth_bps=GBIT_BPS)
        throttled = [one(client, body, gid) for _ in range(args.requests)]
    gvirtus = up["gvirtus"] + up["gvirtus_data"]
    return {"bytes_to_node2_per_tryon": gvirtus + up["gateway"], "bytes_gvirtus_per_tryon": gvirtus,
            "bytes_transport_per_tryon": up["gateway"], "bytes_from_node2_per_tryon": down,
            "proxied_failures": sum(t is None for _, t, _ in counted + throttled),
            "proxied_p50_ms": _pct([ms for ms, _, _ in counted], 50),
            "e2e_1gbit_p50_ms": _pct([ms for ms, _, _ in throttled], 50)}


def in_process_ms(body: bytes, cfg_path: Path, runs: int) -> float:
    """The in-process runner's median wall time on the photo the web app would hand it: the upload's pixels
    and, as TryOnRunner.run's source, the upload itself (a plain RGB JPEG)."""
    from mirror import load_config
    from node1.tryon.in_process import build_in_process

    runner, catalog = build_in_process(load_config(cfg_path))
    img = np.ascontiguousarray(np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), dtype=np.uint8))
    gid = next(g.id for g in catalog.list() if "red" in g.name.lower())
    runner.run(img, gid, lambda stage, ms: None, source=body)  # warm-up
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        runner.run(img, gid, lambda stage, ms: None, source=body)
        samples.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=12, help="sequential requests per measurement")
    ap.add_argument("--concurrent", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3, help="concurrent rounds (each = --concurrent requests)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    allocator = service_allocator()
    img = photo()
    body = _jpeg(img)
    res = direct(body, args)
    res.update(proxied(body, args))
    res.update(photo_bytes=int(img.nbytes), upload_jpeg_bytes=len(body), allocator=allocator)
    if args.json:
        print(json.dumps(res))
        return 0
    p50, base = res["e2e_p50_ms"], res["in_process_ms"]
    print(table(["measure", "value", "vs baseline"], [
        ["sequential p50 (HTTPS, 768x1024) ms", p50, f"{p50 / base:.2f}x in-process"],
        ["sequential p95 / p99 ms", f"{res['e2e_p95_ms']:.1f} / {res['e2e_p99_ms']:.1f}", ""],
        [f"{args.concurrent} concurrent p50 / p95 ms", f"{res['e2e_concurrent_p50_ms']:.1f} / "
         f"{res['e2e_concurrent_p95_ms']:.1f}", ""],
        ["in-process runner (baseline) ms", base, "1.00x"],
        ["node 2 behind 1 Gbit/s proxies p50 ms", res["e2e_1gbit_p50_ms"], f"{res['e2e_1gbit_p50_ms'] / p50:.2f}x"],
        ["bytes to node 2 per try-on", res["bytes_to_node2_per_tryon"],
         f"{res['bytes_to_node2_per_tryon'] / res['photo_bytes']:.2f}x the photo"],
        ["  of which gvirtus / transport", f"{res['bytes_gvirtus_per_tryon']:.0f} / "
         f"{res['bytes_transport_per_tryon']:.0f}", ""],
        ["bytes back from node 2 per try-on", f"{res['bytes_from_node2_per_tryon']:.0f}", ""],
        *[[f"  stage {s} (median) ms", res[f"stage_{s}_ms"], ""] for s in STAGES],
    ]))
    print(f"throughput with {args.concurrent} clients: {res['e2e_throughput_per_s']:.2f} try-ons/s; failures: "
          f"{res['e2e_failures']} direct, {res['proxied_failures']} proxied; device: {res['device']}; "
          f"allocator: {allocator}; the original system: > {ORIGINAL_MS / 1000:.0f} s per photo")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
