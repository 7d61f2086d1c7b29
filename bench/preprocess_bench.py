"""Preprocessing benchmark (issue 5): pose + human parsing at 768x1024, locally and through gvirtus on loopback.

    python bench/preprocess_bench.py [--runs 20] [--threads 2] [--no-remote] [--backend-device cpu|cuda]
                                     [--gpu cuda:0|none] [--json]

Rows (medians): the whole preprocess() call and its stages (pose: until the keypoints are known; parse: the
mask + parse map launch), the parsing module alone, and in the same run the baseline it builds on:
estimate_pose alone. Remote = a real gvirtus backend process on loopback running both the pose stages and the
parsing module as one program (--backend-device, default cpu; "cuda" on a GPU machine). When this torch sees
a CUDA device, a third column runs locally on it (--gpu, default cuda:0; "none" skips it).

Bytes to the backend are measured on the wire: the kernel's TCP counters (tcp_info bytes_acked) of this
process's connections to the backend's gRPC and data ports, read around each remote call
(gvirtus.testing.tcp_bytes_sent). preprocess_bytes_to_backend is the median per preprocess() call;
two_step_bytes_to_backend the same for estimate_pose then parse_person (the path before preprocess kept the
photo on the device: it uploads the photo twice and the mask once), photo_bytes the raw photo.

--json prints one object with preprocess_local_ms, preprocess_remote_ms, remote_over_local, the byte counts
(and the stage breakdown; preprocess_gpu_ms when the GPU column ran).
Targets: <= 50 ms locally on the 2-core CPU (the original: 16.5 s pose + 7.9 s parsing); gvirtus <= 1.3x local.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench import common  # noqa: E402
from bench.common import HEIGHT, WIDTH, device_options, gpu_device, loopback_backend, photo  # noqa: E402

ORIGINAL_MS = 16500.0 + 7900.0      # CLEVER: OpenPose through GVirtuS + human parsing, one image


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _wire_bytes(device: Any) -> int | None:
    """Bytes this process has sent to a gvirtus device's backend so far (None for a local device)."""
    if isinstance(device, str):
        return None
    from gvirtus.testing import backend_ports, tcp_bytes_sent

    return tcp_bytes_sent(backend_ports(device))


def _round(image: np.ndarray, device: Any, rows: dict[str, list[float]]) -> None:
    """One round on one device: preprocess() (with its stage split), then estimate_pose and parse_person alone
    (the two-step path), with the bytes each path sent to a remote device's backend."""
    from node1.parsing import parse_person
    from node1.pose import estimate_pose
    from node1.tryon.preprocess import preprocess

    sent = _wire_bytes(device)
    c = time.process_time()
    pre = preprocess(image, device)
    rows.setdefault("cpu_time", []).append((time.process_time() - c) * 1000)
    if sent is not None:
        rows.setdefault("bytes_to_backend", []).append(float(_wire_bytes(device) or 0) - sent)
    for key, ms in pre.timings_ms.items():   # total, pose, parse and each launch's "pose.<stage>"
        rows.setdefault(key, []).append(ms)
    sent = _wire_bytes(device)
    t = time.perf_counter()
    pose = estimate_pose(image, device)
    rows.setdefault("pose_alone", []).append((time.perf_counter() - t) * 1000)
    assert pose.mask is not None   # estimate_pose always returns it (only a PoseStep's caller may leave it)
    t = time.perf_counter()
    parse_person(image, pose.landmarks, pose.mask, device)
    rows.setdefault("parse_alone", []).append((time.perf_counter() - t) * 1000)
    if sent is not None:
        rows.setdefault("two_step_bytes_to_backend", []).append(float(_wire_bytes(device) or 0) - sent)


def measure(image: np.ndarray, devices: dict[str, Any], runs: int, warmup: int = 3) -> dict[str, dict[str, float]]:
    """Medians (ms; bytes for the byte rows) per device, the devices alternating round by round so they share
    the machine's noise. cpu_time: this process's CPU time (all threads) per preprocess() call."""
    rows: dict[str, dict[str, list[float]]] = {name: {} for name in devices}
    for k in range(warmup + runs):
        for name, dev in devices.items():
            scratch: dict[str, list[float]] = {}
            _round(image, dev, scratch if k < warmup else rows[name])
    return {name: {k: _median(v) for k, v in r.items()} for name, r in rows.items()}


def run_all(image: np.ndarray, runs: int, threads: int, with_remote: bool, backend_device: str = "cpu",
            gpu: str | None = None) -> dict[str, dict[str, float]]:
    local: dict[str, Any] = {"local": "cpu", **({"gpu": gpu} if gpu else {})}
    if not with_remote:
        return measure(image, local, runs)
    with loopback_backend(threads, backend_device) as dev:
        return measure(image, {**local, "remote": dev}, runs)


def main() -> int:
    allocator = common.service_allocator()  # the services' allocator (re-executes this process once)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    device_options(p)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    image = photo()
    load_before = os.getloadavg()[0]
    gpu_dev = gpu_device(args.gpu)
    res = run_all(image, args.runs, args.threads, not args.no_remote, args.backend_device, gpu_dev)
    local, far, gpu = res["local"], res.get("remote"), res.get("gpu")
    result = {
        "preprocess_local_ms": round(local["total"], 2),
        "preprocess_remote_ms": round(far["total"], 2) if far else None,
        "remote_over_local": round(far["total"] / local["total"], 3) if far else None,
        "preprocess_bytes_to_backend": int(far["bytes_to_backend"]) if far else None,
        "two_step_bytes_to_backend": int(far["two_step_bytes_to_backend"]) if far else None,
        "photo_bytes": int(image.nbytes),
        "local_ms": {k: round(v, 2) for k, v in local.items()},
        "remote_ms": {k: round(v, 2) for k, v in far.items() if "bytes" not in k} if far else None,
        "backend_device": None if args.no_remote else args.backend_device,
        "preprocess_gpu_ms": round(gpu["total"], 2) if gpu else None,
        "gpu_device": gpu_dev,
        "gpu_ms": {k: round(v, 2) for k, v in gpu.items()} if gpu else None,
        "threads": args.threads, "image": f"{WIDTH}x{HEIGHT}", "allocator": allocator,
        "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"preprocess (pose + parsing) at {WIDTH}x{HEIGHT}, {args.threads} threads, median of {args.runs}; "
          f"1-min load avg {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"allocator {allocator}")
    if far:
        print(f"gvirtus backend device: {args.backend_device}")
    gpu_head = f"{str(gpu_dev) + ' ms':>14}" if gpu else ""
    print(f"{'row':<36}{'local ms':>10}{'gvirtus ms':>12}{'gvirtus/local':>15}{gpu_head}")
    labels = {"pose": "  pose (until the keypoints)", "parse": "  mask + parse map", "total": "preprocess() total",
              "pose_alone": "baseline: estimate_pose alone", "parse_alone": "parse_person alone",
              "cpu_time": "CPU time of this process / call"}
    for key, label in labels.items():
        r = f"{far[key]:12.2f}{far[key] / local[key]:15.2f}" if far else f"{'-':>12}{'-':>15}"
        g = f"{gpu[key]:14.2f}" if gpu else ""
        print(f"{label:<36}{local[key]:10.2f}{r}{g}")
    print(f"\npreprocess local: {local['total']:.1f} ms (target <= 50); parsing adds "
          f"{local['total'] / local['pose_alone']:.2f}x over the pose step alone; "
          f"vs the original {ORIGINAL_MS / 1000:.1f} s: {ORIGINAL_MS / local['total']:.0f}x faster")
    if far:
        print(f"gvirtus / local = {far['total'] / local['total']:.2f} (target <= 1.3)")
        print(f"bytes sent to the backend per preprocess: {far['bytes_to_backend']:.0f} (photo {image.nbytes}); "
              f"estimate_pose + parse_person: {far['two_step_bytes_to_backend']:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
