"""Live mirror benchmark: delivered fps and glass-to-glass latency of the WebRTC live mode.

    .venv/bin/python bench/live_bench.py [--seconds 20] [--fps 30] [--stills 8] [--stock-client-buffer] [--json]

Starts the LOCAL deployment (start_application.sh: preprocessing on node 2 through gvirtus, the try-on
through the gateway and the VITON service), then an aiortc client in a SEPARATE process
(testing.live_client) streams a 640x480 real-photo sequence (the astronaut swaying; each frame's
number stamped in its pixels) at --fps for --seconds and reads the number back from every received
frame: latency = arrival after decoding - the moment the frame was made (one clock: the client's).
A warm-up session first (same length / 2) lets node 2 register the models at every processing scale.
In the same run, the still-photo try-on (POST /api/tryon) of the same 640x480 frame: e2e_p50_ms.

--json keys: live_fps (frames received / s over the window, whatever they show), live_dressed_fps (frames
node 1 dressed / s over the same window: live_fps counts a frame that failed and passed through with the
red hint too), live_processed ({status: frames} node 1 processed: dressed, no_person, error),
live_frame_errors ({step:code: frames} from node 1's log), live_latency_p50_ms, live_latency_p95_ms
(ALL received stamped frames), live_dropped_ratio (server: frames replaced unprocessed / frames in),
live_sent, live_received, live_server_stage_mean_ms (node 1's per-frame stages over the window),
live_cpu_cores (CPU seconds of the whole deployment's process tree / wall
seconds over the window; the client's own CPU apart: live_client_cpu_cores), live_status_counts,
live_warp_reused (the VITON engine's warp-memo hits and misses over the window, from node 2's /health:
prepared_* the garment prepared at the shopper's scale, sampled_* the whole warp),
e2e_p50_ms, e2e_failures, client_frame_assembly. Percentiles: numpy.percentile linear (bench.common.pct).
The client assembles received frames on the RTP marker bit, as browsers do (node1.live.rtp);
--stock-client-buffer keeps aiortc's stock buffer, which holds each frame until the next one starts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, pct  # noqa: E402

WARMUP_STILLS = 2
CLIENT_TIMEOUT_S = 600.0
CONNECT_WAIT_S = 300.0   # the first live frames (model registration on node 2) on a busy machine


def _cpu_seconds(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(") ", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick   # utime + stime
        except (OSError, IndexError, ValueError):
            continue
    return total


def client_main(url: str, cafile: str, garment: str, seconds: float, fps: float, marker: bool) -> None:
    """The separate client process: stream, then print one JSON line of measurements."""
    import numpy as np
    from skimage import data

    from testing.live_client import LiveClient, photo_sequence

    frames = photo_sequence(np.ascontiguousarray(data.astronaut()), 60)

    async def run() -> dict[str, Any]:
        async with LiveClient(url, cafile, frames, garment, fps=fps, marker_frames=marker) as c:
            await c.wait_frames(1, CONNECT_WAIT_S)
            first_sent = len(c.source.sent_at)
            n0, t0, cpu0 = len(c.received), time.monotonic(), time.process_time()
            await asyncio.sleep(seconds)
            n1, t1, cpu1 = len(c.received), time.monotonic(), time.process_time()
            window = [lat for (num, arr, _), lat in zip(c.received[n0:n1], _lat(c)[n0:n1], strict=True)
                      if lat is not None and t0 <= arr <= t1]
            statuses: dict[str, int] = {}
            for m in c.messages:
                if m.get("type") == "stats":
                    statuses[m["status"]] = statuses.get(m["status"], 0) + 1
            return {"received": n1 - n0, "sent": len(c.source.sent_at) - first_sent, "wall_s": t1 - t0,
                    "latencies_ms": window, "client_cpu_s": cpu1 - cpu0, "statuses": statuses}

    def _lat(c: Any) -> list[float | None]:
        out: list[float | None] = []
        for num, arr, _ in c.received:
            sent = c.source.sent_at.get(num) if num is not None else None
            out.append((arr - sent) * 1000.0 if sent is not None and arr >= sent else None)
        return out

    print(json.dumps(asyncio.run(run())), flush=True)


def _stream(dep: Any, garment: str, seconds: float, fps: float, marker: bool) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--client", dep.url, dep.cafile, garment, str(seconds), str(fps),
                           "marker" if marker else "stock"],
                          cwd=ROOT, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if proc.returncode != 0:
        raise RuntimeError(f"the live client failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _metric(dep: Any, name: str) -> float:
    return sum(_metric_by_label(dep, name, "").values())


def _metric_by_label(dep: Any, name: str, label: str) -> dict[str, float]:
    """{value of `label`: sample} of node 1's Prometheus metric `name` ("" when it has no such label)."""
    import ssl
    import urllib.request

    ctx = ssl.create_default_context(cafile=dep.cafile)
    with urllib.request.urlopen(dep.url + "metrics", context=ctx, timeout=30) as resp:  # noqa: S310 (https)
        text = resp.read().decode()
    out: dict[str, float] = {}
    for m in re.finditer(rf"^{name}(?:{{(.*)}})? (\S+)$", text, re.MULTILINE):
        found = re.search(rf'{label}="([^"]*)"', m.group(1) or "") if label else None
        key = found.group(1) if found else ""
        out[key] = out.get(key, 0.0) + float(m.group(2))
    return out


def _frame_errors(log_text: str) -> dict[str, int]:
    """{code: frames} of the per-frame path's failures node 1 logged (node1.live.frames: "live frame not
    preprocessed (code)" / "live frame not dressed (code)")."""
    out: dict[str, int] = {}
    for step, code in re.findall(r"live frame not (preprocessed|dressed) \((\w+)\)", log_text):
        out[f"{step}:{code}"] = out.get(f"{step}:{code}", 0) + 1
    return out


def _warp_memo(dep: Any) -> dict[str, int]:
    """The VITON engine's warp-memo counters (viton.geometric.memo) from node 2's /health."""
    import urllib.error
    import urllib.request

    url = f"http://127.0.0.1:{dep.config['node2']['health_port']}/health"
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 (loopback http)
            doc = json.loads(resp.read())
    except urllib.error.HTTPError as exc:   # 503: degraded, the document is still the body
        doc = json.loads(exc.read())
    return dict(doc.get("viton", {}).get("meta", {}).get("warp_memo", {}))


STAGES = ("pose", "parsing", "tryon", "total", "latency")
PROCESSED = "live_frames_processed_total"   # node 1 counter: {status}


def _stage_sums(dep: Any) -> dict[str, tuple[float, float]]:
    """stage -> (sum s, count) of live_frame_duration_seconds on /metrics."""
    out = {}
    for stage in STAGES:
        label = f'{{stage="{stage}"}}'
        out[stage] = (_metric(dep, f"live_frame_duration_seconds_sum{label}"),
                      _metric(dep, f"live_frame_duration_seconds_count{label}"))
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import io

    import numpy as np
    from PIL import Image
    from skimage import data

    from node1.cli.http_client import WebClient
    from testing.deployment import LocalDeployment, descendants
    from testing.live_client import photo_sequence

    still = photo_sequence(np.ascontiguousarray(data.astronaut()), 1)[0]
    buf = io.BytesIO()
    Image.fromarray(still).save(buf, "JPEG", quality=92)
    body = buf.getvalue()
    overrides = {"limits": {"rate_limit_per_min": 1000000, "request_timeout_s": 600}}
    with tempfile.TemporaryDirectory() as tmp, LocalDeployment(tmp, overrides=overrides) as dep:
        web = WebClient(dep.url, cafile=dep.cafile, timeout_s=CLIENT_TIMEOUT_S)
        gid = next(g["id"] for g in web.garments() if "red" in g["name"].lower())
        stills_ms: list[float] = []
        failures = 0
        for i in range(WARMUP_STILLS + args.stills):
            t0 = time.perf_counter()
            try:
                web.result(web.tryon(body, gid)["result_url"])
            except Exception:  # noqa: BLE001 - a failure is a measured outcome
                failures += 1
            if i >= WARMUP_STILLS:
                stills_ms.append((time.perf_counter() - t0) * 1000.0)
        marker = not args.stock_client_buffer
        _stream(dep, gid, args.seconds / 2, args.fps, marker)  # warm-up: model registration per scale
        pids = descendants(dep.proc.pid) if dep.proc is not None else []
        in0, drop0 = _metric(dep, "live_frames_in_total"), _metric(dep, "live_frames_dropped_total")
        sums0, memo0 = _stage_sums(dep), _warp_memo(dep)
        done0, log0 = _metric_by_label(dep, PROCESSED, "status"), len(dep.log())
        cpu0, t0 = _cpu_seconds(pids), time.monotonic()
        live = _stream(dep, gid, args.seconds, args.fps, marker)
        cpu1, t1 = _cpu_seconds(pids), time.monotonic()
        in1, drop1 = _metric(dep, "live_frames_in_total"), _metric(dep, "live_frames_dropped_total")
        sums1, memo1 = _stage_sums(dep), _warp_memo(dep)
        done1, errors = _metric_by_label(dep, PROCESSED, "status"), _frame_errors(dep.log()[log0:])
    processed = {k: round(v - done0.get(k, 0.0)) for k, v in done1.items() if v - done0.get(k, 0.0) > 0}
    stage_ms = {k: 1000.0 * (sums1[k][0] - sums0[k][0]) / max(sums1[k][1] - sums0[k][1], 1.0) for k in STAGES}
    lat = live["latencies_ms"]
    return {
        "live_fps": live["received"] / live["wall_s"],
        "live_dressed_fps": processed.get("dressed", 0) / live["wall_s"],
        "live_processed": processed, "live_frame_errors": errors,
        "live_latency_p50_ms": pct(lat, 50), "live_latency_p95_ms": pct(lat, 95),
        "live_dropped_ratio": (drop1 - drop0) / max(in1 - in0, 1.0),
        "live_sent": live["sent"], "live_received": live["received"],
        # the deployment's CPU over the client's whole run (connect + window + hang-up) per wall second
        "live_cpu_cores": (cpu1 - cpu0) / (t1 - t0),
        "live_client_cpu_cores": live["client_cpu_s"] / live["wall_s"],
        "live_status_counts": live["statuses"],
        "live_server_stage_mean_ms": stage_ms,
        "live_warp_reused": {k: memo1.get(k, 0) - memo0.get(k, 0) for k in memo1},
        "e2e_p50_ms": pct(stills_ms, 50), "e2e_failures": failures,
        "seconds": args.seconds, "fps_sent": args.fps, "resolution": "640x480",
        "client_frame_assembly": "aiortc-stock" if args.stock_client_buffer else "marker",
        "max_rss_mb_bench": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        url, cafile, garment, seconds, fps, assembly = sys.argv[2:8]
        client_main(url, cafile, garment, float(seconds), float(fps), assembly == "marker")
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--stills", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--stock-client-buffer", action="store_true",
                    help="the client keeps aiortc's stock jitter buffer (a frame waits for the next one's first "
                         "packet) instead of assembling frames on the marker bit as browsers do")
    args = ap.parse_args()
    res = measure(args)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:28s} {v:.1f}" if isinstance(v, float) else f"{k:28s} {v}")
        print(f"targets: live_fps >= 15 ({'met' if res['live_fps'] >= 15 else 'NOT met'}), live_latency_p50_ms "
              f"<= 150 ({'met' if res['live_latency_p50_ms'] <= 150 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
