"""Issue 4's accuracy criterion on 60 variants of the oracle photos, not only the four photos themselves.

scripts/pose_variants.py makes 15 variants of each oracle photo (scales, paddings, crops, gammas, small
rotations, a JPEG round trip: each moves the detector's letterbox and the landmark crop to new sub-pixel
positions); mediapipe 0.10.21 answered for each once (tests/data/pose_oracle_variants.json, made by
scripts/make_pose_oracle.py --variants in a throw-away venv). Criterion as in test_pose_oracle.py: every
landmark with visibility > 0.5 in both within 1.5% of the image diagonal, and where mediapipe finds nobody
we find nobody.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from node1.pose import BLAZEPOSE_NAMES, NoPersonDetected, estimate_pose

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from pose_variants import digest, variants  # noqa: E402

VARIANTS_PATH = ROOT / "tests" / "data" / "pose_oracle_variants.json"
DIAG_FRACTION = 0.015


@pytest.fixture(scope="module")
def variant_oracle() -> dict:
    return json.loads(VARIANTS_PATH.read_text(encoding="utf-8"))["images"]


@pytest.fixture(scope="module")
def variant_images(oracle_images: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{base}/{name}": img for base, photo in oracle_images.items() for name, img in variants(photo)}


def test_variants_are_the_ones_mediapipe_saw(variant_oracle: dict, variant_images: dict) -> None:
    assert sorted(variant_images) == sorted(variant_oracle)
    changed = [k for k, img in variant_images.items() if digest(img) != variant_oracle[k]["sha256"]]
    assert not changed, f"these variants differ from the oracle's (another OpenCV?): {changed}"


def test_landmarks_match_mediapipe_on_every_variant(variant_oracle: dict, variant_images: dict) -> None:
    failures, compared, worst_seen = [], 0, 0.0
    for key, img in variant_images.items():
        ref = variant_oracle[key]["landmarks"]
        try:
            ours = estimate_pose(img).landmarks
        except NoPersonDetected:
            if ref is not None:
                failures.append(f"{key}: we found nobody, mediapipe found a person")
            continue
        if ref is None:
            failures.append(f"{key}: mediapipe found nobody, we found a person")
            continue
        ref = np.asarray(ref)
        both = (ref[:, 3] > 0.5) & (ours[:, 3] > 0.5)
        err = np.hypot(*(ours[both, :2] - ref[both, :2]).T)
        limit = DIAG_FRACTION * float(np.hypot(*img.shape[:2]))
        compared += 1
        worst_seen = max(worst_seen, float(err.max()) / limit)
        if err.max() > limit:
            worst = int(np.argmax(err))
            failures.append(f"{key}: {BLAZEPOSE_NAMES[np.flatnonzero(both)[worst]]} off by {err.max():.2f} px "
                            f"(limit {limit:.1f})")
    assert compared >= 50
    assert not failures, "\n".join(failures)
    assert worst_seen < 0.5  # measured: 0.28 of the limit (2.9 px); the four photos alone: 0.03
