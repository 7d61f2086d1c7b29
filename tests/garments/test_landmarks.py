"""Garment landmarks: against the generator's known points, left/right convention, horizontal flip."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from garments import LANDMARK_NAMES, LandmarkError, cloth_mask, find_landmarks

PAIRS = ("shoulder", "armpit", "hem", "cuff")
# silhouette kinds: a collared shirt cannot be told from a long sleeve by its outline
EXPECTED_KIND = {"tshirt": "tshirt", "longsleeve": "longsleeve", "tank": "tank", "shirt": "longsleeve",
                 "hoodie": "hoodie"}


def truth_points(item: dict) -> np.ndarray:
    return np.array([item["landmarks"][n] for n in LANDMARK_NAMES], np.float32)


def body_width(item: dict) -> float:
    lm = item["landmarks"]
    return float(lm["armpit_left"][0] - lm["armpit_right"][0])


def test_landmarks_match_the_generator_on_every_demo_garment(demo_items) -> None:
    for it in demo_items:
        found = find_landmarks(it["truth"])
        err = np.hypot(*(found.points - truth_points(it)).T)
        tol = 0.06 * body_width(it)     # ~23 px on a 768x1024 photo
        worst = {n: round(float(e), 1) for n, e in zip(LANDMARK_NAMES, err, strict=True) if e > tol}
        assert not worst, f"{it['slug']}: landmarks off by more than {tol:.0f} px: {worst}"
        assert found.kind == EXPECTED_KIND[it["kind"]], it["slug"]


def test_landmarks_from_the_computed_mask_agree(demo_items) -> None:
    for it in (i for i in demo_items if i["slug"] in ("tshirt-white", "hoodie-grey", "tank-olive")):
        found = find_landmarks(cloth_mask(it["rgb"]))
        err = np.hypot(*(found.points - truth_points(it)).T)
        assert (err <= 0.06 * body_width(it)).all(), (it["slug"], err.round(1))


def test_wearer_sides_are_mirrored_in_the_image(demo_items) -> None:
    for it in demo_items:
        p = dict(zip(LANDMARK_NAMES, find_landmarks(it["truth"]).points, strict=True))
        cx = p["collar"][0]
        for part in PAIRS:
            # the wearer's right appears on the image's left
            assert p[f"{part}_right"][0] < cx < p[f"{part}_left"][0], (it["slug"], part)
        assert p["collar"][1] < p["armpit_right"][1] < p["hem_right"][1]
        assert p["shoulder_right"][1] < p["armpit_right"][1]


def test_horizontal_flip_swaps_left_and_right(demo_items) -> None:
    for it in demo_items:
        m = it["truth"]
        w = m.shape[1]
        a = dict(zip(LANDMARK_NAMES, find_landmarks(m).points, strict=True))
        b = dict(zip(LANDMARK_NAMES, find_landmarks(np.ascontiguousarray(m[:, ::-1])).points, strict=True))
        for part in PAIRS:
            for s, o in (("right", "left"), ("left", "right")):
                mirrored = np.array([w - 1 - a[f"{part}_{o}"][0], a[f"{part}_{o}"][1]])
                assert np.hypot(*(b[f"{part}_{s}"] - mirrored)) <= 2.5, (it["slug"], part, s)
        assert abs(b["collar"][0] - (w - 1 - a["collar"][0])) <= 2.5


def test_tiny_or_empty_masks_are_refused() -> None:
    with pytest.raises(LandmarkError, match="need at least"):
        find_landmarks(np.zeros((100, 100), np.uint8))
    with pytest.raises(LandmarkError, match=r"must be \(H, W\)"):
        find_landmarks(np.zeros((10, 10, 3), np.uint8))


def test_tilted_jpeg_photos_still_give_usable_masks_and_landmarks(demo_items, iou) -> None:
    """A product photo is rarely perfect: tilt 3 degrees, shrink, shift and save as JPEG (quality 90)."""
    tilt = cv2.getRotationMatrix2D((384, 512), 3, 0.85)
    tilt[:, 2] += (40, 30)
    for it in (i for i in demo_items if i["slug"] in ("tshirt-white", "longsleeve-cream")):
        img = cv2.warpAffine(it["rgb"], tilt, (768, 1024), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        truth = cv2.warpAffine(it["truth"], tilt, (768, 1024), flags=cv2.INTER_LINEAR)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        photo = np.asarray(Image.open(buf).convert("RGB"))
        m = cloth_mask(photo)
        assert iou(m, truth) >= 0.97, it["slug"]
        got, ref = find_landmarks(m), find_landmarks(truth)
        assert got.kind == ref.kind == EXPECTED_KIND[it["kind"]]
        err = np.hypot(*(got.points - ref.points).T)
        assert err.max() <= 0.1 * body_width(it), (it["slug"], err.round(1))
