"""The pose oracle check (tests/pose/test_pose_oracle.py's criteria) on any device, as a report.

    python scripts/pose_oracle_check.py [--device cpu|cuda:0|portable-cpu] [--backend-device cuda] [--no-tf32]
                                        [--json]

--device: a local torch device ("cpu" = the default local path, "portable-cpu" = the portable graph gvirtus
runs, "cuda:0"). --backend-device: instead, start a gvirtus backend on loopback with that gvirtus.device and
run through it. For each oracle photo it prints the landmarks visible in both, the worst landmark error (px,
and which landmark), the median error, the largest visibility difference and the pose-mask difference, and
whether each of the test's criteria holds (worst <= 1.5% of the diagonal, median < 0.5 px, visibilities
within 0.02, mask means within 0.03, faces within 0.5 px). Exit status 0 when every criterion holds, 1 if not.
--no-tf32: turn TF32 off for cuDNN convolutions and CUDA matmuls in this process (torch enables it for
convolutions by default; the gvirtus backend turns it off itself).
Used to check the oracle on CUDA (the test itself runs the default device).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ORACLE_PATH = ROOT / "tests" / "data" / "pose_oracle.json"
IMAGES = ("astronaut", "astronaut_flipped", "camera", "camera_flipped")
DIAG_FRACTION = 0.015
MEDIAN_PX = 0.5
VISIBILITY_TOL = 0.02
MASK_TOL = 0.03
FACE_TOL_PX = 0.5
MASK_GRID = 32


def oracle_images() -> dict[str, np.ndarray]:
    """The oracle's photos: skimage's astronaut and camera (grey as RGB) and their horizontal flips."""
    from skimage import data

    g = data.camera()
    out = {"astronaut": np.ascontiguousarray(data.astronaut()),
           "camera": np.ascontiguousarray(np.stack([g, g, g], axis=-1))}
    for name in list(out):
        out[name + "_flipped"] = np.ascontiguousarray(out[name][:, ::-1])
    return out


def grid_mean(mask: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    return mask.astype(np.float64).reshape(MASK_GRID, h // MASK_GRID, MASK_GRID, w // MASK_GRID).mean(axis=(1, 3)) / 255


@contextlib.contextmanager
def open_device(device: str, backend_device: str | None) -> Iterator[Any]:
    """The device argument for node1.pose: a local device name / runner, or a gvirtus session."""
    if backend_device is None:
        if device == "portable-cpu":
            from node1.pose.runners import LocalRunner

            yield LocalRunner("cpu", cpu_fast=False)
        else:
            yield device
        return
    import gvirtus
    from gvirtus.testing import BackendProcess

    with BackendProcess(torch_threads=1, device=backend_device) as backend:
        dev = gvirtus.connect(backend.target, token=backend.token)
        try:
            yield dev
        finally:
            dev.close()


def check_image(name: str, image: np.ndarray, ref: dict[str, Any], device: Any) -> dict[str, Any]:
    from node1.pose import BLAZEPOSE_NAMES, detect_faces, estimate_pose

    r = estimate_pose(image, device)
    assert r.mask is not None   # estimate_pose always returns it (only a PoseStep's caller may leave it)
    lm = np.asarray(ref["landmarks"])
    both = (lm[:, 3] > 0.5) & (r.landmarks[:, 3] > 0.5)
    err = np.hypot(*(r.landmarks[both, :2] - lm[both, :2]).T)
    worst = int(np.argmax(err)) if err.size else 0
    h, w = image.shape[:2]
    limit = DIAG_FRACTION * float(np.hypot(h, w))
    vis = float(np.abs(r.landmarks[:, 3] - lm[:, 3]).max())
    mask = float(np.abs(grid_mean(r.mask) - np.asarray(ref["mask32"])).max())
    faces = detect_faces(image, device)
    face_err = (float(max(np.abs(faces[0].keypoints - np.asarray(ref["faces"][0]["keypoints"])).max(),
                          np.abs(np.asarray(faces[0].box_xywh) - np.asarray(ref["faces"][0]["box_xywh"])).max()))
                if len(faces) == 1 and len(ref["faces"]) == 1 else float("inf"))
    worst_px = float(err.max()) if err.size else float("nan")
    median_px = float(np.median(err)) if err.size else float("nan")
    out: dict[str, Any] = {"image": name, "served_by": r.served_by, "visible_in_both": int(both.sum()),
           "worst_px": worst_px,
           "worst_landmark": BLAZEPOSE_NAMES[int(np.flatnonzero(both)[worst])] if err.size else "",
           "median_px": median_px, "limit_px": limit,
           "visibility_max_diff": vis, "mask_max_diff": mask, "face_max_px": face_err}
    out["ok"] = bool(both.sum() >= 10 and worst_px <= limit and median_px < MEDIAN_PX
                     and vis <= VISIBILITY_TOL and mask < MASK_TOL and face_err <= FACE_TOL_PX)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu (default local path), portable-cpu, cuda:0, ...")
    ap.add_argument("--backend-device", default=None, help="run through a loopback gvirtus backend on this device")
    ap.add_argument("--no-tf32", action="store_true", help="local CUDA: convolutions and matmuls in full float32")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    if args.no_tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    oracle = json.loads(ORACLE_PATH.read_text(encoding="utf-8"))
    images = oracle_images()
    with open_device(args.device, args.backend_device) as device:
        rows = [check_image(n, images[n], oracle["images"][n], device) for n in IMAGES]
    where = f"gvirtus backend on {args.backend_device}" if args.backend_device else args.device
    if not args.backend_device and args.device.startswith("cuda"):
        where += f" (TF32 for cuDNN convolutions {'on' if torch.backends.cudnn.allow_tf32 else 'off'})"
    if args.json:
        print(json.dumps({"device": where, "torch": torch.__version__, "rows": rows}))
    else:
        print(f"pose oracle check on {where} (torch {torch.__version__})")
        print(f"{'photo':<18}{'vis':>4}{'worst px':>10}  {'landmark':<18}{'median':>8}{'vis diff':>9}"
              f"{'mask':>7}{'face px':>9}  ok")
        for r in rows:
            print(f"{r['image']:<18}{r['visible_in_both']:>4}{r['worst_px']:>10.2f}  {r['worst_landmark']:<18}"
                  f"{r['median_px']:>8.3f}{r['visibility_max_diff']:>9.4f}{r['mask_max_diff']:>7.3f}"
                  f"{r['face_max_px']:>9.1e}  {'yes' if r['ok'] else 'NO'}")
        print(f"criteria: worst <= {rows[0]['limit_px']:.1f} px (1.5% of diagonal), median < {MEDIAN_PX} px, "
              f"visibility within {VISIBILITY_TOL}, mask within {MASK_TOL}, faces within {FACE_TOL_PX} px")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
