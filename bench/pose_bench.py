"""Pose step benchmark (issue 4): per stage at 768x1024, locally on CPU and through gvirtus on loopback,
with LiteRT running the same two models in the same run as the floor.

    python bench/pose_bench.py [--runs 20] [--threads 2] [--no-remote] [--backend-device cpu|cuda]
                               [--gpu cuda:0|none] [--json]

Rows: whole pose step (estimate_pose) local and remote, its stages (detector, crop, landmark, post =
mask warp + host post-processing), and model-only times: our torch modules as the local path runs them
(detector lowered bit-exactly + oneDNN-fused landmark model), both models fused, and the portable graphs, vs
LiteRT (XNNPACK, measured in a child process during the same run, so its spinning thread pool cannot
starve torch's threads) on the same input sizes.
Same-run, alternating: the pose step runs local, remote (and GPU) in turn within every iteration (the
order flips each iteration), so a load change on this shared machine hits every column alike; the
model rows run in ROUNDS rounds, each a LiteRT child run then the torch models, medians pooled.
--backend-device: the gvirtus backend's device (default cpu; "cuda" on a GPU machine). When this torch sees
a CUDA device, a third column runs the step on a local GPU (--gpu, default cuda:0; "none" skips it).
--json prints one object with pose_local_ms, pose_remote_ms, model_torch_ms, model_litert_ms (and more:
model_lowered_ms, model_portable_ms; pose_gpu_ms when the GPU column ran).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench import common  # noqa: E402
from bench.common import HEIGHT, WIDTH, device_options, gpu_device, loopback_backend, photo  # noqa: E402


def pose_steps(image: np.ndarray, devices: dict[str, Any], runs: int, warmup: int = 3) -> dict[str, dict[str, float]]:
    """Median ms of the whole pose step and of each stage, per device; the devices take turns within every
    iteration (order reversed on odd iterations) so that all see the same machine load."""
    from node1.pose import estimate_pose

    for device in devices.values():
        for _ in range(warmup):
            estimate_pose(image, device)
    totals: dict[str, list[float]] = {name: [] for name in devices}
    stages: dict[str, list[dict[str, float]]] = {name: [] for name in devices}
    order = list(devices)
    for i in range(runs):
        for name in (order if i % 2 == 0 else order[::-1]):
            t = time.perf_counter()
            r = estimate_pose(image, devices[name])
            totals[name].append((time.perf_counter() - t) * 1000)
            stages[name].append(r.timings_ms)
    out: dict[str, dict[str, float]] = {}
    for name in devices:
        row = {"total": statistics.median(totals[name])}
        for key in stages[name][0]:
            row[key] = statistics.median(s[key] for s in stages[name])
        out[name] = row
    return out


ROUNDS = 3   # model rows: LiteRT child run and torch models alternate this many times


MODELS = [("pose_detector", "pose_detection.tflite", 224), ("pose_landmarks", "pose_landmark_full.tflite", 256)]


def litert_samples(runs: int, threads: int) -> dict[str, list[float]]:
    """LiteRT (XNNPACK) per model, every sample in ms. Run in a child process: XNNPACK's thread pool spins
    after each invoke and, on 2 cores, starved torch's OpenMP threads in the same process (whole step
    58 -> 300+ ms)."""
    from ai_edge_litert.interpreter import Interpreter

    from mirror import model_path

    rng = np.random.default_rng(0)
    out: dict[str, list[float]] = {}
    for stage, file_name, size in MODELS:
        x = rng.uniform(0, 1, (1, size, size, 3)).astype(np.float32)
        interp = Interpreter(model_path=str(model_path(file_name)), num_threads=threads)
        interp.allocate_tensors()
        idx = interp.get_input_details()[0]["index"]

        def litert(interp: Any = interp, idx: int = idx, x: np.ndarray = x) -> None:
            interp.set_tensor(idx, x)
            interp.invoke()

        out[f"{stage}_litert"] = samples_ms(litert, runs)
    return out


def samples_ms(fn: Callable[[], Any], runs: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return times


def model_times(runs: int, threads: int) -> dict[str, float]:
    """Median ms per model and implementation; LiteRT (child process) and torch alternate in ROUNDS rounds."""
    import subprocess

    from node1.pose.runners import LocalRunner

    local, portable_runner = LocalRunner("cpu"), LocalRunner("cpu", cpu_fast=False)
    rng = np.random.default_rng(0)
    fns: dict[str, Callable[[], Any]] = {}
    for stage, _, size in MODELS:
        xt = torch.from_numpy(rng.uniform(0, 1, (1, 3, size, size)).astype(np.float32))
        for kind, model in (("torch", local.module(stage).model), ("portable", portable_runner.module(stage).model),
                            ("lowered", _lowered(stage, size))):
            def run(m: Any = model, xt: torch.Tensor = xt) -> None:
                with torch.inference_mode():
                    m(xt)

            fns[f"{stage}_{kind}"] = run
    per_round = max(1, -(-runs // ROUNDS))
    pooled: dict[str, list[float]] = {}
    for _ in range(ROUNDS):
        child = subprocess.run([sys.executable, __file__, "--litert-only", "--runs", str(per_round), "--threads",
                                str(threads)], capture_output=True, text=True, check=True)
        for key, values in json.loads(child.stdout.strip().splitlines()[-1]).items():
            pooled.setdefault(key, []).extend(values)
        for key, fn in fns.items():
            pooled.setdefault(key, []).extend(samples_ms(fn, per_round))
    return {key: statistics.median(values) for key, values in pooled.items()}


def _lowered(stage: str, size: int) -> Any:
    """The model as node1.tflite.cpu lowers it (the local path does so for every model but the detector)."""
    from node1.pose.runners import MODEL_INPUTS
    from node1.tflite import load_model
    from node1.tflite.cpu import optimize_for_cpu

    return optimize_for_cpu(load_model(MODEL_INPUTS[stage][0], "nchw"),
                            torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)))


def step_columns(image: np.ndarray, args: Any, gpu_dev: str | None) -> dict[str, dict[str, float]]:
    """The pose step on every column (local CPU, gvirtus on loopback, local GPU), interleaved."""
    devices: dict[str, Any] = {"local": "cpu"}
    if gpu_dev:
        devices["gpu"] = gpu_dev
    if args.no_remote:
        return pose_steps(image, devices, args.runs)
    with loopback_backend(args.threads, args.backend_device) as dev:
        return pose_steps(image, {**devices, "remote": dev}, args.runs)


def main() -> int:
    allocator = common.service_allocator()  # the services' allocator (re-executes this process once)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    device_options(p)
    p.add_argument("--litert-only", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.litert_only:
        print(json.dumps(litert_samples(args.runs, args.threads)))
        return 0
    torch.set_num_threads(args.threads)
    image = photo()
    load_before = os.getloadavg()[0]
    models = model_times(args.runs, args.threads)
    gpu_dev = gpu_device(args.gpu)
    columns = step_columns(image, args, gpu_dev)
    local, gpu, remote = columns["local"], columns.get("gpu"), columns.get("remote")
    torch_ms = models["pose_detector_torch"] + models["pose_landmarks_torch"]
    litert_ms = models["pose_detector_litert"] + models["pose_landmarks_litert"]
    portable_ms = models["pose_detector_portable"] + models["pose_landmarks_portable"]
    lowered_ms = models["pose_detector_lowered"] + models["pose_landmarks_lowered"]
    result = {
        "pose_local_ms": round(local["total"], 2),
        "pose_remote_ms": round(remote["total"], 2) if remote else None,
        "model_torch_ms": round(torch_ms, 2),
        "model_litert_ms": round(litert_ms, 2),
        "model_portable_ms": round(portable_ms, 2),
        "model_lowered_ms": round(lowered_ms, 2),
        "local_stages_ms": {k: round(v, 2) for k, v in local.items()},
        "remote_stages_ms": {k: round(v, 2) for k, v in remote.items()} if remote else None,
        "backend_device": None if args.no_remote else args.backend_device,
        "pose_gpu_ms": round(gpu["total"], 2) if gpu else None,
        "gpu_device": gpu_dev,
        "gpu_stages_ms": {k: round(v, 2) for k, v in gpu.items()} if gpu else None,
        "models_ms": {k: round(v, 2) for k, v in models.items()},
        "threads": args.threads, "image": f"{WIDTH}x{HEIGHT}", "allocator": allocator,
        "load_avg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"pose step at {WIDTH}x{HEIGHT}, {args.threads} threads, median of {args.runs} (columns interleaved); "
          f"1-min load avg {load_before:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"allocator {allocator}")
    if not args.no_remote:
        print(f"gvirtus backend device: {args.backend_device}")
    gpu_head = f"{str(gpu_dev) + ' ms':>14}" if gpu else ""
    print(f"{'stage':<28}{'local ms':>10}{'gvirtus ms':>12}{gpu_head}")
    names = {"detector_input": "letterbox (upload+prep)", "detector": "detector", "crop": "crop",
             "landmark": "landmark", "mask": "mask warp", "post": "host post"}
    for key, label in names.items():
        far = f"{remote[key]:12.2f}" if remote else f"{'-':>12}"
        g = f"{gpu[key]:14.2f}" if gpu else ""
        print(f"{label:<28}{local[key]:10.2f}{far}{g}")
    far = f"{remote['total']:12.2f}" if remote else f"{'-':>12}"
    g = f"{gpu['total']:14.2f}" if gpu else ""
    print(f"{'whole step':<28}{local['total']:10.2f}{far}{g}   target local <= 30 ms")
    if remote:
        print(f"gvirtus / local = {remote['total'] / local['total']:.2f}   target <= 1.3")
    print(f"\n{'model':<28}{'torch ms':>10}{'portable':>10}{'lowered':>10}{'LiteRT ms':>11}{'ratio':>8}"
          f"{'lowered/LiteRT':>16}")
    for stage in ("pose_detector", "pose_landmarks"):
        t, pt, lw, lr = (models[f"{stage}_{k}"] for k in ("torch", "portable", "lowered", "litert"))
        print(f"{stage:<28}{t:10.2f}{pt:10.2f}{lw:10.2f}{lr:11.2f}{t / lr:8.2f}{lw / lr:16.2f}")
    print(f"{'both (model_torch_ms)':<28}{torch_ms:10.2f}{portable_ms:10.2f}{lowered_ms:10.2f}{litert_ms:11.2f}"
          f"{torch_ms / litert_ms:8.2f}{lowered_ms / litert_ms:16.2f}   target ratio <= 2")
    print("torch = as the local pose step runs them (detector lowered bit-exactly: docs/pose.md, Sensitivity);"
          " portable = unlowered")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
