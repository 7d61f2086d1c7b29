"""Compute the pose/face oracle ONCE with mediapipe's own legacy solutions and store it as test data.

mediapipe 0.10.21 pins numpy<2, protobuf<5 and jax, so it must never enter the project's .venv.
Run this in a separate, throw-away venv:

    python3 -m venv /tmp/mpvenv && /tmp/mpvenv/bin/pip install mediapipe==0.10.21 scikit-image
    /tmp/mpvenv/bin/python scripts/make_pose_oracle.py --out tests/data/pose_oracle.json
    /tmp/mpvenv/bin/python scripts/make_pose_oracle.py --variants --out tests/data/pose_oracle_variants.json

It records, for skimage's astronaut and camera (grey copied to RGB) and a horizontally flipped copy of
each: mediapipe's 33 pose landmarks in pixels (x, y), z, visibility; the pose segmentation mask and
the selfie-segmentation (general model) mask, each averaged to 32x32; and the short-range face
detections (box and 6 keypoints in pixels, score).
--variants: instead, mediapipe's pose landmarks (or null: no person) for the 60 variants of those four
photos that scripts/pose_variants.py makes (scales, paddings, crops, gammas, rotations, JPEG), each with
its image digest.
Settings are those node1.pose reproduces: static_image_mode=True, model_complexity=1,
enable_segmentation=True, min_detection_confidence=0.5, min_tracking_confidence=0.5.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

MASK_GRID = 32


def images() -> dict[str, np.ndarray]:
    from skimage import data

    cam = data.camera()
    base = {"astronaut": data.astronaut(), "camera": np.stack([cam, cam, cam], axis=-1)}
    out: dict[str, np.ndarray] = {}
    for name, img in base.items():
        out[name] = np.ascontiguousarray(img)
        out[name + "_flipped"] = np.ascontiguousarray(img[:, ::-1])
    return out


def pose_record(img: np.ndarray) -> dict[str, Any]:
    import mediapipe as mp

    h, w = img.shape[:2]
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=True,
                                min_detection_confidence=0.5, min_tracking_confidence=0.5) as pose:
        res = pose.process(img)
    if res.pose_landmarks is None:
        return {"landmarks": None, "mask32": None}
    lms = [[lm.x * w, lm.y * h, lm.z, lm.visibility] for lm in res.pose_landmarks.landmark]
    return {"landmarks": lms, "mask32": grid_mean(np.asarray(res.segmentation_mask, dtype=np.float64))}


def grid_mean(mask: np.ndarray) -> list[list[float]]:
    h, w = mask.shape
    gh, gw = h // MASK_GRID, w // MASK_GRID
    small = mask[: gh * MASK_GRID, : gw * MASK_GRID].reshape(MASK_GRID, gh, MASK_GRID, gw).mean(axis=(1, 3))
    return np.round(small, 4).tolist()


def selfie_record(img: np.ndarray) -> list[list[float]]:
    import mediapipe as mp

    with mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0) as seg:
        res = seg.process(img)
    return grid_mean(np.asarray(res.segmentation_mask, dtype=np.float64))


def face_record(img: np.ndarray) -> list[dict[str, Any]]:
    import mediapipe as mp

    h, w = img.shape[:2]
    with mp.solutions.face_detection.FaceDetection(min_detection_confidence=0.5, model_selection=0) as fd:
        res = fd.process(img)
    faces = []
    for det in res.detections or []:
        bb = det.location_data.relative_bounding_box
        kps = [[k.x * w, k.y * h] for k in det.location_data.relative_keypoints]
        faces.append({"score": float(det.score[0]),
                      "box_xywh": [bb.xmin * w, bb.ymin * h, bb.width * w, bb.height * h], "keypoints": kps})
    return faces


def variant_records() -> dict[str, Any]:
    from pose_variants import digest, variants  # scripts/ is this script's directory

    out: dict[str, Any] = {}
    for base, img in images().items():
        for name, v in variants(img):
            rec = pose_record(v)
            lms = None if rec["landmarks"] is None else [[round(c, 4) for c in lm] for lm in rec["landmarks"]]
            out[f"{base}/{name}"] = {"landmarks": lms, "shape": list(v.shape), "sha256": digest(v)}
            print(f"{base}/{name}: {'no person' if rec['landmarks'] is None else 'landmarks'}")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--variants", action="store_true", help="the 60 variants' pose landmarks instead")
    args = p.parse_args()
    import mediapipe as mp

    if args.variants:
        doc = {"mediapipe": mp.__version__, "images": variant_records()}
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(doc, f, separators=(",", ":"))
        return 0

    out: dict[str, Any] = {"mediapipe": mp.__version__, "mask_grid": MASK_GRID, "images": {}}
    for name, img in images().items():
        rec = pose_record(img)
        rec["faces"] = face_record(img)
        rec["selfie_mask32"] = selfie_record(img)
        rec["shape"] = list(img.shape)
        out["images"][name] = rec
        n = 0 if rec["landmarks"] is None else len(rec["landmarks"])
        print(f"{name}: {n} landmarks, {len(rec['faces'])} faces")
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
