"""Geometric try-on engine: speed at 512x384 and 1024x768, A/B against another git ref in the same
run, and fidelity on the repo's real photos.

Input for the timings: skimage's astronaut through node 1's real preprocessing, cropped to 512x384
and (upscaled 2x, keypoints scaled) to 1024x768, dressed in the first demo garment (a t-shirt);
with --person drawn (or when node1.tryon.preprocess / garments.demo are missing) a drawn person with an
exact parse and a drawn t-shirt.

    .venv/bin/python bench/viton_bench.py [--repeat N] [--rounds R] [--baseline-ref REF] [--json]

A/B: the engine of --baseline-ref (default main; '' = none) is extracted with `git archive REF viton`
into a temp folder; the current engine and that one each run in their own worker process on the
same inputs, alternately, R rounds of N calls per size (first round's order flips every round).
Keys (--json): geometric_<size>_ms (median of all the current engine's calls), _min_ms, _cpu_ms
(process CPU ms per call), baseline_<size>_ms and ratio_<size> (current / baseline medians),
baseline_ref. Fidelity over the repo's photos and their mirror images x every demo garment:
explained_ratio_min (smallest share of changed pixels the warped garment explains),
protected_max_diff (largest mean |difference| in a protected region: face box, hair, lower body,
below the hem), highpass_corr_max, pattern_transfer_max, edge_softness_min (share of the garment's
edge that is anti-aliased) (tests/viton/fidelity_metrics.py).
Targets (issue 17): ratio_1024 <= 1.2, explained_ratio_min >= 0.9, protected_max_diff == 0.

Categories (issue 19), in the same run and the same current-engine worker: the camera man (legs in view;
real preprocessing, upscaled 2x and cropped to 1024x768) dressed in the demo t-shirt, the jeans, the skirt
and the dress, the four alternating (R rounds of N calls, the order rotating every round). Keys:
viton_top_ms, viton_bottom_ms (jeans), viton_skirt_ms, viton_dress_ms (medians of all calls),
bottom_over_top, dress_over_top; lower_explained_ratio_min (bottoms and dresses on the camera man and
his mirror image). Target: a bottom or a dress costs at most 1.5x a top (bottom_over_top, dress_over_top).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"512": (512, 384), "1024": (1024, 768)}
WORKER_TIMEOUT_S = 600.0
CATEGORY_GARMENTS = {"top": "tshirt-red", "bottom": "jeans-indigo", "skirt": "skirt-burgundy",
                     "dress": "dress-teal"}   # timing key -> demo slug
MAX_LOWER_OVER_TOP = 1.5


def _crop_scale(image: np.ndarray, parse: np.ndarray, kp: np.ndarray, factor: int, x0: int,
                width: int) -> dict[str, np.ndarray]:
    """Upscale `factor` x (bilinear image, nearest labels), keep columns x0..x0+width."""
    def big(a: np.ndarray, interp: int) -> np.ndarray:
        h, w = a.shape[:2]
        return np.ascontiguousarray(cv2.resize(a, (w * factor, h * factor), interpolation=interp)[:, x0:x0 + width])
    k = kp.copy()
    k[:, :2] = k[:, :2] * factor - np.array([x0, 0], np.float32)
    k[kp[:, 2] <= 0] = 0
    return {"image": big(image, cv2.INTER_LINEAR), "parse": big(parse, cv2.INTER_NEAREST), "keypoints": k}


def make_inputs(kind: str, path: Path) -> str:
    """Write the timing inputs (people per size + garment) to an .npz; returns what they are."""
    sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "viton")]
    arrays: dict[str, Any] = {}
    what = "drawn person + drawn t-shirt"
    try:
        if kind != "astronaut":
            raise ImportError("--person drawn")
        from skimage import data

        from garments.demo import DEMO_DESIGNS, render_garment
        from node1.tryon.preprocess import preprocess
    except ImportError as exc:
        from viton_synth import drawn_person, make_garment

        print(f"(timing input: drawn person: {exc})", file=sys.stderr)
        for key, (h, w) in SIZES.items():
            p = drawn_person(h, w)
            arrays.update({f"{key}_image": p.image, f"{key}_parse": p.parse, f"{key}_keypoints": p.keypoints})
        g = make_garment("tshirt")
        garment = (g.image, g.mask, g.landmarks, g.kind)
    else:
        pre = preprocess(np.ascontiguousarray(data.astronaut()), device="cpu")
        kp = np.asarray(pre.body25, np.float32)
        for key, (factor, x0, width) in {"512": (1, 50, 384), "1024": (2, 100, 768)}.items():
            for name, a in _crop_scale(pre.image, pre.parse, kp, factor, x0, width).items():
                arrays[f"{key}_{name}"] = a
        r = render_garment(DEMO_DESIGNS[0])
        garment = (r.image, r.mask, np.asarray(r.landmarks, np.float32), DEMO_DESIGNS[0].kind)
        what = "astronaut (real preprocessing) + demo t-shirt"
    arrays.update({"g_image": garment[0], "g_mask": garment[1], "g_landmarks": garment[2],
                   "g_kind": np.array(garment[3])})
    if kind == "astronaut":
        arrays.update(_category_inputs())
    np.savez(path, **arrays)
    return what


def _category_inputs() -> dict[str, np.ndarray]:
    """The camera man (legs in view) at 1024x768 and the category garments, as .npz arrays."""
    from skimage import data

    from garments.demo import DEMO_DESIGNS, render_garment
    from node1.tryon.preprocess import preprocess

    g = data.camera()
    pre = preprocess(np.ascontiguousarray(np.stack([g, g, g], axis=-1)), device="cpu")
    arrays = {f"cat_{k}": a for k, a in _crop_scale(pre.image, pre.parse, np.asarray(pre.body25, np.float32),
                                                     2, 0, 768).items()}
    by_slug = {d.slug: d for d in DEMO_DESIGNS}
    for key, slug in CATEGORY_GARMENTS.items():
        r = render_garment(by_slug[slug])
        arrays.update({f"{key}_image": r.image, f"{key}_mask": r.mask, f"{key}_kind": np.array(by_slug[slug].kind),
                       f"{key}_landmarks": np.asarray(r.landmarks, np.float32)})
    return arrays


def worker(viton_root: str, inputs: str, threads: int) -> int:
    """Serve timing requests on stdin ('SIZE N' -> one JSON line {"ms": [...], "cpu_ms": [...]})."""
    sys.path[:0] = [viton_root]
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    from viton import GarmentData, GeometricEngine, PersonData

    d = np.load(inputs)
    garment = GarmentData(d["g_image"], d["g_mask"], d["g_landmarks"], str(d["g_kind"]))
    # a contract with a pose picture field (before issue 15) checks its shape but its engine never reads it
    has_pose = "pose_render" in PersonData.__dataclass_fields__
    people = {k: PersonData(image=d[f"{k}_image"], parse=d[f"{k}_parse"], keypoints=d[f"{k}_keypoints"],
                            **({"pose_render": np.zeros_like(d[f"{k}_image"])} if has_pose else {}))
              for k in SIZES}
    engine = GeometricEngine()
    for p in people.values():  # warm-up
        engine.try_on(p, garment)
    print(json.dumps({"ready": str(Path(sys.modules["viton"].__file__ or "").parent)}), flush=True)
    categories: dict[str, tuple[Any, Any]] = {}
    for line in sys.stdin:
        size, n = line.split()
        if size.startswith("cat:"):   # a category timing: the camera man in that category's garment
            key = size.removeprefix("cat:")
            if key not in categories:
                cam = PersonData(image=d["cat_image"], parse=d["cat_parse"], keypoints=d["cat_keypoints"])
                g = GarmentData(d[f"{key}_image"], d[f"{key}_mask"], d[f"{key}_landmarks"], str(d[f"{key}_kind"]))
                engine.try_on(cam, g)   # warm-up
                categories[key] = (cam, g)
            person, gar = categories[key]
        else:
            person, gar = people[size], garment
        ms, cpu = [], []
        for _ in range(int(n)):
            c0, t0 = time.process_time(), time.perf_counter()
            engine.try_on(person, gar)
            ms.append((time.perf_counter() - t0) * 1000.0)
            cpu.append((time.process_time() - c0) * 1000.0)
        print(json.dumps({"ms": ms, "cpu_ms": cpu}), flush=True)
    return 0


class Worker:
    """One engine in its own process (fresh interpreter, so two `viton` packages never mix)."""

    def __init__(self, viton_root: Path, inputs: Path, threads: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", str(viton_root), "--inputs", str(inputs), "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
        self.where = json.loads(self._line())["ready"]

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"timing worker exited with {self.proc.wait(WORKER_TIMEOUT_S)}")
        return line

    def time(self, size: str, n: int) -> dict[str, list[float]]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{size} {n}\n")
        self.proc.stdin.flush()
        out: dict[str, list[float]] = json.loads(self._line())
        return out

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(WORKER_TIMEOUT_S)


def extract_ref(ref: str, dest: Path) -> Path:
    """`git archive REF viton` unpacked under dest; returns the folder holding `viton/`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "viton"], capture_output=True, check=False)
    if archive.returncode != 0:
        raise SystemExit(f"--baseline-ref {ref!r}: git archive failed: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def fidelity() -> dict[str, float]:
    """Fidelity keys over the repo's photos and their mirror images x every demo garment."""
    sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "viton")]
    import fidelity_metrics as fm
    import photo_variants as pv

    from viton import GeometricEngine

    engine = GeometricEngine()
    explained, diffs, hp, pt, soft = [], [], [], [], []
    for name in pv.PHOTOS:
        for kind in ("original", "flip"):
            p = pv.person(name, kind)
            if p is None:
                raise SystemExit(f"the pose found nobody in {name}/{kind}")
            for _, g in pv.demo_garments():
                r = engine.try_on(p, g)
                explained.append(fm.explained_ratio(p, r))
                diffs.append(max(mean for _, mean in fm.protected_diffs(p, r.image).values()))
                hp.append(fm.highpass_correlation(p, r))
                soft.append(fm.edge_softness(r))
                t = fm.pattern_transfer(p, r)
                pt.extend([] if t is None else [t])
    lower = []
    for kind in ("original", "flip"):
        p = pv.person("camera", kind)
        for _, g in pv.demo_garments("bottom") + pv.demo_garments("dress"):
            lower.append(fm.explained_ratio(p, engine.try_on(p, g)))
    return {"explained_ratio_min": round(min(explained), 4), "protected_max_diff": round(max(diffs), 4),
            "highpass_corr_max": round(max(hp), 4), "pattern_transfer_max": round(max(pt, default=0.0), 4),
            "edge_softness_min": round(min(soft), 4),
            "fidelity_cases": len(explained), "lower_explained_ratio_min": round(min(lower), 4),
            "lower_fidelity_cases": len(lower)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=10, help="calls per size per round")
    ap.add_argument("--rounds", type=int, default=4, help="alternating rounds (current, baseline)")
    ap.add_argument("--baseline-ref", default="main", help="git ref whose engine is the baseline ('' = none)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--person", choices=["astronaut", "drawn"], default="astronaut")
    ap.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads (the box has 2 cores)")
    ap.add_argument("--no-fidelity", action="store_true", help="timings only")
    ap.add_argument("--no-categories", action="store_true", help="no top/bottom/dress timings")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--inputs", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.inputs, args.threads)
    with tempfile.TemporaryDirectory(prefix="viton_bench_") as tmp:
        inputs = Path(tmp) / "inputs.npz"
        what = make_inputs(args.person, inputs)
        workers = {"current": Worker(ROOT, inputs, args.threads)}
        if args.baseline_ref:
            workers["baseline"] = Worker(extract_ref(args.baseline_ref, Path(tmp)), inputs, args.threads)
        samples: dict[tuple[str, str], dict[str, list[float]]] = {
            (w, s): {"ms": [], "cpu_ms": []} for w in workers for s in SIZES}
        cats = list(CATEGORY_GARMENTS) if args.person == "astronaut" and not args.no_categories else []
        by_cat: dict[str, list[float]] = {c: [] for c in cats}
        for r in range(args.rounds):
            order = list(workers) if r % 2 == 0 else list(workers)[::-1]
            for size in SIZES:
                for w in order:
                    got = workers[w].time(size, args.repeat)
                    for k in ("ms", "cpu_ms"):
                        samples[w, size][k].extend(got[k])
            for c in cats[r % len(cats):] + cats[:r % len(cats)] if cats else []:   # rotating order
                by_cat[c].extend(workers["current"].time(f"cat:{c}", args.repeat)["ms"])
        for proc in workers.values():
            proc.close()
    results: dict[str, Any] = {}
    for size in SIZES:
        cur = samples["current", size]
        results[f"geometric_{size}_ms"] = round(statistics.median(cur["ms"]), 2)
        results[f"geometric_{size}_min_ms"] = round(min(cur["ms"]), 2)
        results[f"geometric_{size}_cpu_ms"] = round(statistics.median(cur["cpu_ms"]), 2)
        if "baseline" in workers:
            base = samples["baseline", size]
            results[f"baseline_{size}_ms"] = round(statistics.median(base["ms"]), 2)
            results[f"baseline_{size}_cpu_ms"] = round(statistics.median(base["cpu_ms"]), 2)
            results[f"ratio_{size}"] = round(results[f"geometric_{size}_ms"] / results[f"baseline_{size}_ms"], 3)
    results["baseline_ref"] = args.baseline_ref
    results["calls_per_size"] = args.rounds * args.repeat
    for c, ms in by_cat.items():
        results[f"viton_{c}_ms"] = round(statistics.median(ms), 2)
    if by_cat:
        results["bottom_over_top"] = round(results["viton_bottom_ms"] / results["viton_top_ms"], 3)
        results["dress_over_top"] = round(results["viton_dress_ms"] / results["viton_top_ms"], 3)
        results["category_size"] = "1024x768 (camera man, legs in view)"
    if not args.no_fidelity:
        results.update(fidelity())
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"input: {what}; {args.rounds} alternating rounds x {args.repeat} calls per size and engine")
    for k, v in results.items():
        print(f"  {k:24s} {v}")
    if "ratio_1024" in results:
        print(f"target: ratio_1024 <= 1.2 -> {'met' if results['ratio_1024'] <= 1.2 else 'NOT met'}")
    if "bottom_over_top" in results:
        worst = max(results["bottom_over_top"], results["dress_over_top"])
        print(f"target: bottom/dress <= {MAX_LOWER_OVER_TOP}x a top -> "
              f"{'met' if worst <= MAX_LOWER_OVER_TOP else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
