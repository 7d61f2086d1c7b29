"""The three images: size, cached rebuild, start to healthy, and what containers cost the try-on.

    .venv/bin/python bench/images_bench.py [--rounds 3] [--requests 20] [--builds 3] [--json]

Needs rootful podman (scripts/bootstrap.sh --dev installs it). Builds the images first
(scripts/build_images.sh; cached), then:
  sizes      each image's uncompressed size and the bytes all three share (`podman image tree`)
  build      `scripts/build_images.sh` again with no source change, --builds times (median)
  start      `start_application.sh --containers` to "Virtual Mirror is up" (all three healthy), LOCAL,
             nothing else of this benchmark running; the first start makes the var volume (the demo
             catalog: reported apart), later ones reuse it
  e2e        sequential try-ons of the 768x1024 astronaut over HTTPS to the LOCAL deployment as containers
             and as processes (start_application.sh), both up side by side and the requests alternating
             one by one, for --rounds rounds; p50 over ALL requests of each kind (2 warm-up requests per
             deployment excluded), failures beside them, the per-stage p50s as extras
--json keys: image_node1_mb, image_node2_mb, image_viton_mb, images_shared_mb, build_cached_s,
start_to_healthy_s, e2e_containers_p50_ms, e2e_processes_p50_ms (+ extras). MB = 10^6 bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from PIL import Image  # noqa: E402

from bench.common import pct, photo, table  # noqa: E402
from node1.cli.http_client import ApiError, ApiUnreachable, WebClient  # noqa: E402
from testing.deployment import LocalDeployment  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, CONTAINERS_CONF=os.environ.get("CONTAINERS_CONF", str(ROOT / "deploy" / "containers.conf")),
           VM_CONTAINER_ENGINE="podman")
ROLES = ("node1", "node2", "viton")
TARGET_IMAGE_MB = 1400.0
TARGET_BUILD_CACHED_S = 30.0
TARGET_START_S = 20.0
TARGET_E2E_OVERHEAD = 0.10
REQUEST_TIMEOUT_S = 600
UNITS = {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}
LAYER = re.compile(r"ID: (\w+) Size:\s+([\d.]+)(B|kB|MB|GB)")


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], env=ENV, check=True, capture_output=True, text=True).stdout


def build() -> float:
    t0 = time.perf_counter()
    done = subprocess.run([str(ROOT / "scripts" / "build_images.sh"), "--quiet"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"scripts/build_images.sh failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def layer_sizes(image: str) -> dict[str, int]:
    """{layer digest: bytes} of an image: RootFS.Layers paired with the history's non-empty steps
    (exact bytes; `podman image tree`'s rounded sizes when the two do not pair up)."""
    digests = json.loads(podman("image", "inspect", "--format", "{{json .RootFS.Layers}}", image))
    steps = [int(h["size"]) for h in reversed(json.loads(podman("history", "--format", "json", image)))
             if int(h["size"])]
    if len(steps) == len(digests):
        return dict(zip(digests, steps, strict=True))
    return {m[1]: int(float(m[2]) * UNITS[m[3]]) for m in LAYER.finditer(podman("image", "tree", image))}


def sizes(tag: str) -> dict[str, float]:
    """Each image's size and the bytes of the layers all three share, in MB."""
    layers = {role: layer_sizes(f"virtual-mirror-{role}:{tag}") for role in ROLES}
    out = {f"image_{role}_mb": int(podman("image", "inspect", "--format", "{{.Size}}",
                                          f"virtual-mirror-{role}:{tag}")) / 1e6 for role in ROLES}
    common = set.intersection(*(set(v) for v in layers.values()))
    out["images_shared_mb"] = sum(layers["node1"][layer] for layer in common) / 1e6
    return out


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(photo()).save(buf, "JPEG", quality=92)
    return buf.getvalue()


KINDS = ("containers", "processes")
STAGES = ("pose", "parsing", "transfer", "tryon")


def _start(kind: str, work: Path, project: str) -> tuple[LocalDeployment, float]:
    overrides = {"limits": {"rate_limit_per_min": 1000000, "request_timeout_s": REQUEST_TIMEOUT_S}}
    args = ("--containers", "--project", project) if kind == "containers" else ()
    dep = LocalDeployment(work, overrides=overrides, args=args, env={"VM_CONTAINER_ENGINE": "podman"})
    t0 = time.perf_counter()
    dep.start()
    return dep, time.perf_counter() - t0


def run_round(body: bytes, requests: int, project: str, out: dict[str, dict[str, list[float]]]) -> None:
    """Both deployments up (containers started first, each start timed), then `requests` try-ons on
    each, alternating request by request (who goes first alternates too), so both see the same load."""
    with tempfile.TemporaryDirectory() as tmp:
        deps: dict[str, LocalDeployment] = {}
        try:
            for kind in KINDS:
                deps[kind], up_s = _start(kind, Path(tmp) / kind, project)
                out[kind]["start_s"].append(up_s)
            clients = {k: WebClient(d.url, cafile=d.cafile, timeout_s=REQUEST_TIMEOUT_S + 30) for k, d in deps.items()}
            gids = {k: next(g["id"] for g in c.garments() if "red" in g["name"].lower()) for k, c in clients.items()}
            for kind, client in clients.items():
                for _ in range(2):  # warm-up: the first try-on registers the models on gvirtus
                    client.result(client.tryon(body, gids[kind])["result_url"])
            for i in range(requests):
                for kind in (KINDS if i % 2 == 0 else KINDS[::-1]):
                    t = time.perf_counter()
                    try:
                        reply = clients[kind].tryon(body, gids[kind])
                        clients[kind].result(reply["result_url"])
                    except (ApiError, ApiUnreachable):
                        out[kind]["failures"].append(1.0)
                        continue
                    out[kind]["lat"].append((time.perf_counter() - t) * 1000.0)
                    for stage in STAGES:
                        out[kind][stage].append(float(reply["timings_ms"].get(stage, 0.0)))
        finally:
            for dep in deps.values():
                dep.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="rounds of both deployments side by side")
    ap.add_argument("--requests", type=int, default=20, help="try-ons per deployment and round (after 2 warm-up)")
    ap.add_argument("--builds", type=int, default=3, help="cached rebuilds to time")
    ap.add_argument("--tag", default="0.1.0")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    load_start = os.getloadavg()[0]  # the machine is shared: say how busy it was
    build()  # the images exist and are current; the runs below change nothing
    build_s = [build() for _ in range(args.builds)]
    res: dict[str, float] = {**sizes(args.tag), "build_cached_s": statistics.median(build_s)}
    body = _jpeg()
    project = f"vmbench{os.getpid()}"
    got: dict[str, dict[str, list[float]]] = {k: {key: [] for key in ("start_s", "lat", "failures", *STAGES)}
                                              for k in KINDS}
    try:
        for _ in range(args.rounds):
            run_round(body, args.requests, project, got)
    finally:
        subprocess.run(["podman", "volume", "rm", f"{project}-var"], env=ENV, capture_output=True)
    starts = {k: got[k]["start_s"] for k in KINDS}
    lat = {k: got[k]["lat"] for k in KINDS}
    fails = {k: len(got[k]["failures"]) for k in KINDS}
    warm = starts["containers"][1:] or starts["containers"]
    res.update({
        "start_to_healthy_s": statistics.median(warm), "start_to_healthy_first_s": starts["containers"][0],
        "start_processes_s": statistics.median(starts["processes"]),
        "e2e_containers_p50_ms": pct(lat["containers"], 50), "e2e_processes_p50_ms": pct(lat["processes"], 50),
        "e2e_containers_p95_ms": pct(lat["containers"], 95), "e2e_processes_p95_ms": pct(lat["processes"], 95),
        "e2e_requests_each": len(lat["containers"]), "e2e_failures_containers": fails["containers"],
        "e2e_failures_processes": fails["processes"], "rounds": args.rounds,
        "loadavg_1m_start": load_start, "loadavg_1m_end": os.getloadavg()[0], "cpus": float(os.cpu_count() or 0),
        **{f"stage_{st}_{k}_p50_ms": pct(got[k][st], 50) for k in KINDS for st in STAGES},
    })
    over = res["e2e_containers_p50_ms"] / res["e2e_processes_p50_ms"] - 1.0
    if args.json:
        print(json.dumps({**res, "e2e_containers_overhead": over, "build_cached_runs_s": build_s,
                          "start_to_healthy_runs_s": starts["containers"]}))
        return 0
    print(table(["measure", "value", "target", "met"], [
        *[[f"image {r} (MB)", res[f"image_{r}_mb"], f"<= {TARGET_IMAGE_MB:.0f}",
           str(res[f"image_{r}_mb"] <= TARGET_IMAGE_MB)] for r in ROLES],
        ["shared by all three (MB)", res["images_shared_mb"], "", ""],
        ["cached rebuild (s)", res["build_cached_s"], f"<= {TARGET_BUILD_CACHED_S:.0f}",
         str(res["build_cached_s"] <= TARGET_BUILD_CACHED_S)],
        ["start to healthy, containers (s)", res["start_to_healthy_s"], f"<= {TARGET_START_S:.0f}",
         str(res["start_to_healthy_s"] <= TARGET_START_S)],
        ["  first start (new volume) (s)", res["start_to_healthy_first_s"], "", ""],
        ["  processes, for reference (s)", res["start_processes_s"], "", ""],
        ["e2e p50 containers (ms)", res["e2e_containers_p50_ms"], "", ""],
        ["e2e p50 processes (ms)", res["e2e_processes_p50_ms"], "", ""],
        ["containers' e2e overhead", f"{over:+.1%}", f"<= +{TARGET_E2E_OVERHEAD:.0%}",
         str(over <= TARGET_E2E_OVERHEAD)],
    ]))
    print(f"{res['e2e_requests_each']:.0f} requests of each kind over {args.rounds} alternating rounds; failures: "
          f"containers {fails['containers']}, processes {fails['processes']}; load average (1 min) "
          f"{load_start:.1f} at the start, {res['loadavg_1m_end']:.1f} at the end, {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
