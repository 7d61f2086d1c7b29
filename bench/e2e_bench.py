"""End-to-end try-on latency over HTTPS against the LOCAL deployment (start_application.sh).

    .venv/bin/python bench/e2e_bench.py [--requests 10] [--concurrent 8] [--json]

Sequential requests, then `--concurrent` clients at once, each POSTing a 768x1024 photo (the
astronaut) with a demo garment to /api/tryon; per-stage breakdown from the API's timings_ms.
Baseline in the same run: the same photo through the in-process pipeline (preprocessing + engine
in this process, no servers, no HTTPS), so the ratio is what the distributed path costs.
--json keys: e2e_p50_ms, e2e_p95_ms, e2e_concurrent8_p50_ms, e2e_throughput_per_s (+ extras).
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.common import pct, photo, table  # noqa: E402
from mirror.deployment import LocalDeployment  # noqa: E402
from node1.web_client import WebClient  # noqa: E402

TARGET_P50_MS = 250.0
ORIGINAL_MS = 25000.0  # CLEVER: more than 25 s per photo
STAGES = ("pose", "parsing", "transfer", "tryon")


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def in_process_ms(img: np.ndarray, garment_id: str, cfg_path: Path, runs: int) -> float:
    from mirror import load_config
    from node1.local_pipeline import build_local

    pipe, _ = build_local(load_config(cfg_path))
    pipe.run(img, garment_id, lambda s: None)  # warm-up
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        pipe.run(img, garment_id, lambda s: None)
        samples.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(samples)


def one(client: WebClient, body: bytes, gid: str) -> tuple[float, dict[str, float]]:
    t0 = time.perf_counter()
    out = client.tryon(body, gid)
    client.result(out["result_url"])
    return (time.perf_counter() - t0) * 1000.0, out["timings_ms"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=10, help="sequential requests (after 2 warm-up)")
    ap.add_argument("--concurrent", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2, help="concurrent rounds (each = --concurrent requests)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    img = photo()
    body = _jpeg(img)
    overrides = {"limits": {"rate_limit_per_min": 1000000, "request_timeout_s": 600},
                 "node1": {"workers": args.concurrent}}
    with tempfile.TemporaryDirectory() as tmp, LocalDeployment(tmp, overrides=overrides) as dep:
        client = WebClient(dep.url, cafile=dep.cafile, timeout_s=900)
        gid = next(g["id"] for g in client.garments() if "red" in g["name"].lower())
        for _ in range(2):
            one(client, body, gid)
        seq = [one(client, body, gid) for _ in range(args.requests)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.concurrent) as pool:
            conc = list(pool.map(lambda _: one(client, body, gid), range(args.concurrent * args.rounds)))
        wall = time.perf_counter() - t0
        device = client.tryon(body, gid)["device"]
        base_ms = in_process_ms(img, gid, dep.config_path, max(3, args.requests // 2))
    lat = [x[0] for x in seq]
    stage_ms = {s: statistics.median(t.get(s, 0.0) for _, t in seq) for s in STAGES}
    res = {
        "e2e_p50_ms": pct(lat, 50), "e2e_p95_ms": pct(lat, 95),
        "e2e_concurrent8_p50_ms": pct([x[0] for x in conc], 50),
        "e2e_concurrent_p95_ms": pct([x[0] for x in conc], 95),
        "e2e_throughput_per_s": len(conc) / wall,
        "in_process_ms": base_ms, "concurrent_clients": args.concurrent, "device": device,
        **{f"stage_{s}_ms": v for s, v in stage_ms.items()},
    }
    if args.json:
        print(json.dumps(res))
        return 0
    p50 = res["e2e_p50_ms"]
    print(table(["measure", "ms", "vs in-process", "vs target"], [
        ["sequential p50 (HTTPS, 768x1024)", p50, f"{p50 / base_ms:.2f}x", f"{p50 / TARGET_P50_MS:.2f}x of 250"],
        ["sequential p95", res["e2e_p95_ms"], f"{res['e2e_p95_ms'] / base_ms:.2f}x", ""],
        [f"{args.concurrent} concurrent p50", res["e2e_concurrent8_p50_ms"], "", ""],
        [f"{args.concurrent} concurrent p95", res["e2e_concurrent_p95_ms"], "", ""],
        ["in-process pipeline (baseline)", base_ms, "1.00x", ""],
        *[[f"  stage {s} (median)", v, "", ""] for s, v in stage_ms.items()],
    ]))
    print(f"throughput with {args.concurrent} clients: {res['e2e_throughput_per_s']:.2f} try-ons/s; "
          f"device: {device}; the original system: > {ORIGINAL_MS / 1000:.0f} s per photo "
          f"({ORIGINAL_MS / p50:.0f}x slower than this p50)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
