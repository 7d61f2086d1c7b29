"""Bottoms and dresses: landmarks from the cloth mask (the generator's exact silhouette and the mask
computed from the product photo) against the generator's own landmarks, the kind told from the
silhouette, a top refused as a bottom or a dress (LandmarkError naming why), and the category kept
through preparation, storage and loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from garments import (
    InvalidGarmentImage,
    LandmarkError,
    NoGarmentFound,
    category_of,
    cloth_mask,
    find_category_landmarks,
    landmark_names,
    prepare_garment,
)
from garments.prepare import load_garment, save_garment

TOLERANCE = 0.05            # x the garment's height: how far a found landmark may lie from the generator's


def truth_points(item: dict) -> np.ndarray:
    names = landmark_names(item["category"])
    return np.array([item["landmarks"][n] for n in names], np.float64)


def height(item: dict) -> float:
    ys = np.nonzero(item["truth"] >= 128)[0]
    return float(ys.max() - ys.min() + 1)


def test_the_demo_catalog_has_bottoms_and_a_dress(lower_items) -> None:
    kinds = sorted(it["kind"] for it in lower_items)
    assert {"trousers", "skirt", "dress"} <= set(kinds), kinds
    assert all(it["category"] == category_of(it["kind"]) for it in lower_items)


@pytest.mark.parametrize("source", ["truth", "computed"])
def test_landmarks_match_the_generator(lower_items, source: str) -> None:
    for it in lower_items:
        mask = it["truth"] if source == "truth" else cloth_mask(it["rgb"])
        found = find_category_landmarks(mask, it["category"])
        assert found.points.shape == (len(landmark_names(it["category"])), 2)
        err = np.hypot(*(found.points - truth_points(it)).T)
        tol = TOLERANCE * height(it)
        worst = {n: round(float(e), 1) for n, e in zip(landmark_names(it["category"]), err, strict=True) if e > tol}
        assert not worst, f"{it['slug']} ({source}): landmarks off by more than {tol:.0f} px: {worst}"
        assert found.kind == it["kind"], (it["slug"], found.kind)


def test_wearer_sides_are_mirrored(lower_items) -> None:
    for it in (i for i in lower_items if i["category"] == "bottom"):
        p = dict(zip(landmark_names("bottom"), find_category_landmarks(it["truth"], "bottom").points, strict=True))
        assert p["waist_right"][0] < p["crotch"][0] < p["waist_left"][0], it["slug"]
        assert p["hem_right_outer"][0] <= p["hem_right_inner"][0] <= p["hem_left_inner"][0] <= p["hem_left_outer"][0]
        assert p["waist_right"][1] < p["crotch"][1] <= p["hem_right_inner"][1] + 1


def test_a_top_is_refused_as_a_bottom_or_a_dress(demo_items) -> None:
    for it in demo_items:
        with pytest.raises(LandmarkError, match="does not look like a bottom") as err:
            find_category_landmarks(it["truth"], "bottom")
        assert "category 'top'" in str(err.value)
        with pytest.raises(LandmarkError, match="looks like a top"):
            find_category_landmarks(it["truth"], "dress")


def test_a_bottom_is_refused_as_a_dress(lower_items) -> None:
    for it in (i for i in lower_items if i["category"] == "bottom"):
        with pytest.raises(LandmarkError):
            find_category_landmarks(it["truth"], "dress")


def test_prepare_keeps_the_category(lower_items, tmp_path: Path) -> None:
    it = next(i for i in lower_items if i["kind"] == "trousers")
    g = prepare_garment(it["rgb"], "Jeans", category="bottom")
    assert g.category == "bottom" and g.kind == "trousers" and g.landmarks.shape == (7, 2)
    save_garment(g, tmp_path / "g")
    back = load_garment(tmp_path / "g")
    assert back.id == g.id and back.category == "bottom" and np.allclose(back.landmarks, g.landmarks)
    assert back.landmark("crotch") == g.landmark("crotch")


def test_typed_errors_of_a_bottom(lower_items) -> None:
    with pytest.raises(NoGarmentFound):
        prepare_garment(np.full((400, 300, 3), 200, np.uint8), "Nothing", category="bottom")
    it = lower_items[0]
    with pytest.raises(InvalidGarmentImage, match="'shoes' is not one of top, bottom, dress"):
        prepare_garment(it["rgb"], "x", category="shoes")
    with pytest.raises(InvalidGarmentImage, match="'tshirt' is a top, not a bottom"):
        prepare_garment(it["rgb"], "x", kind="tshirt", category="bottom")
