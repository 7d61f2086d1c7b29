"""The pose detector inside the pose step: bit-exact lowering (gvirtus.exactconv) vs the portable graph.

    python bench/detector_bench.py [--rounds 10] [--steps 4] [--threads 2] [--json]

One process runs the whole local pose step (estimate_pose at 768x1024) with two runners that differ only
in the detector: the default one (lowered bit-exactly) and one with the portable detector swapped in. The
two alternate in rounds, so the VM's drift hits both alike; each stage call is timed. The landmarks must
come out identical (checked first). --json prints detector_exact_ms, detector_portable_ms, step_exact_ms,
step_portable_ms (medians).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import photo, service_allocator, table  # noqa: E402


def main() -> None:
    allocator = service_allocator()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--steps", type=int, default=4, help="pose steps per runner per round")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from node1.pose import estimate_pose
    from node1.pose.runners import Keep, LocalRunner, Stage, stage_module, stage_name

    stage_ms: dict[tuple[str, str], list[float]] = defaultdict(list)

    class Timed(LocalRunner):
        def __init__(self, tag: str) -> None:
            super().__init__("cpu")
            self.tag = tag

        def call(self, stage: Stage, *inputs: torch.Tensor, keep: Keep = False, free: Sequence[Any] = ()
                 ) -> tuple[Any, ...]:
            t = time.perf_counter()
            out = super().call(stage, *inputs, keep=keep, free=free)
            stage_ms[(self.tag, stage_name(stage))].append((time.perf_counter() - t) * 1000.0)
            return out

    exact, portable = Timed("exact"), Timed("portable")
    portable._modules["pose_detector"] = stage_module("pose_detector", cpu_fast=False)
    image = photo()
    a, b = estimate_pose(image, exact), estimate_pose(image, portable)
    if not np.array_equal(a.landmarks, b.landmarks):
        raise SystemExit("the two detectors gave different landmarks: the exact lowering is broken")
    for _ in range(3):
        estimate_pose(image, exact), estimate_pose(image, portable)
    stage_ms.clear()
    step_ms: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.rounds):
        for runner in (exact, portable):
            for _ in range(args.steps):
                t = time.perf_counter()
                estimate_pose(image, runner)
                step_ms[runner.tag].append((time.perf_counter() - t) * 1000.0)

    def med(values: list[float]) -> float:
        return round(statistics.median(values), 2)

    out = {"detector_exact_ms": med(stage_ms[("exact", "pose_detector")]),
           "detector_portable_ms": med(stage_ms[("portable", "pose_detector")]),
           "step_exact_ms": med(step_ms["exact"]), "step_portable_ms": med(step_ms["portable"]),
           "threads": args.threads, "samples": args.rounds * args.steps, "allocator": allocator}
    if args.json:
        print(json.dumps(out))
        return
    print(f"pose step at 768x1024, {args.threads} threads, one process, {out['samples']} steps per runner "
          f"in alternating rounds; medians; landmarks identical; allocator {allocator}")
    print(table(["", "exact ms", "portable ms", "exact / portable"], [
        ["detector stage", out["detector_exact_ms"], out["detector_portable_ms"],
         f"{out['detector_exact_ms'] / out['detector_portable_ms']:.2f}"],
        ["whole step", out["step_exact_ms"], out["step_portable_ms"],
         f"{out['step_exact_ms'] / out['step_portable_ms']:.2f}"]]))


if __name__ == "__main__":
    main()
