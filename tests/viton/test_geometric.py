"""The geometric engine on constructed people (exact parse maps): layering, coverage, spill,
unchanged pixels, determinism, flips, and the typed input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from kornia.geometry.transform import warp_points_tps
from viton_synth import drawn_person, make_garment

from viton import GeometricEngine, InvalidInput, PersonData, PoseIncomplete
from viton.geometric import changeable_region
from viton.geometric.regions import KEPT_LABELS, UPPER_LABELS
from viton.geometric.warp import fit_tps

KINDS = ("tshirt", "longsleeve", "tank")


@pytest.fixture(scope="module")
def engine() -> GeometricEngine:
    return GeometricEngine()


def flipped(p: PersonData) -> PersonData:
    """Mirror a person left-right: image, parse (arm labels swap sides), keypoints (R/L swap)."""
    w = p.image.shape[1]
    parse = p.parse[:, ::-1].copy()
    left, right = parse == 14, parse == 15
    parse[left], parse[right] = 15, 14
    kp = p.keypoints.copy()
    kp[:, 0] = np.where(kp[:, 2] > 0, w - 1 - kp[:, 0], 0)
    swap = [0, 1, 5, 6, 7, 2, 3, 4, 8, 12, 13, 14, 9, 10, 11, 16, 15, 18, 17, 22, 23, 24, 19, 20, 21]
    return PersonData(image=p.image[:, ::-1].copy(), parse=parse, keypoints=kp[swap].copy())


def check_invariants(person: PersonData, out: np.ndarray, alpha: np.ndarray) -> tuple[float, float]:
    """Assert the acceptance invariants; return (coverage, spill)."""
    assert out.shape == person.image.shape and out.dtype == np.uint8
    assert np.isfinite(alpha).all() and alpha.min() >= 0 and alpha.max() <= 1
    region = changeable_region(person.parse).astype(bool)
    kept = np.isin(person.parse, KEPT_LABELS)
    assert not (region & kept).any()
    assert np.array_equal(out[~region], person.image[~region]), "pixels outside the changeable region changed"
    upper = np.isin(person.parse, UPPER_LABELS)
    covered = alpha > 0.5
    coverage = float((covered & upper).sum() / upper.sum())
    spill = float((covered & (person.parse == 0)).sum() / max(covered.sum(), 1))
    return coverage, spill


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("flip", [False, True])
def test_drawn_person_invariants(engine: GeometricEngine, kind: str, flip: bool) -> None:
    person = drawn_person()
    person = flipped(person) if flip else person
    result = engine.try_on(person, make_garment(kind))
    coverage, spill = check_invariants(person, result.image, result.garment_alpha)
    assert coverage >= 0.85, f"{kind}: garment covers only {coverage:.1%} of the upper clothes"
    assert spill <= 0.05, f"{kind}: {spill:.1%} of the garment lies outside the person"
    assert set(result.timings_ms) >= {"anchors", "warp", "composite", "total"}


def test_deterministic_and_flip_symmetric(engine: GeometricEngine) -> None:
    person, garment = drawn_person(), make_garment("tshirt")
    a = engine.try_on(person, garment)
    b = engine.try_on(person, garment)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.garment_alpha, b.garment_alpha)
    # the drawn person and garment are nearly symmetric: the mirrored try-on matches the mirror image
    m = engine.try_on(flipped(person), make_garment("tshirt"))
    diff = np.abs(m.garment_alpha[:, ::-1] - a.garment_alpha)
    assert diff.mean() < 0.02


def test_layering_arms_hair_and_sleeves(engine: GeometricEngine) -> None:
    person = drawn_person()
    r = engine.try_on(person, make_garment("tshirt"))
    hair_face = np.isin(person.parse, (2, 13))
    assert r.garment_alpha[hair_face].max() == 0.0
    # the sleeve covers the top of the upper arm; the forearm stays in front / uncovered
    arm = person.parse == 15
    ys = np.nonzero(arm)[0]
    top = arm & (np.arange(arm.shape[0])[:, None] < ys.min() + 0.2 * (ys.max() - ys.min()))
    low = arm & (np.arange(arm.shape[0])[:, None] > ys.min() + 0.7 * (ys.max() - ys.min()))
    assert r.garment_alpha[top].mean() > 0.6
    assert r.garment_alpha[low].mean() < 0.05
    assert np.array_equal(r.image[low], person.image[low])


def test_light_of_old_clothes_survives(engine: GeometricEngine) -> None:
    """The drawn shirt has darker fold bands: the same bands must darken the new garment."""
    person = drawn_person()
    r = engine.try_on(person, make_garment("tshirt", colour=(200, 200, 200)))
    shirt = person.parse == 5
    fold = shirt & (person.image.sum(-1) < person.image[shirt].sum(-1).mean())
    flat = shirt & ~fold
    solid = r.garment_alpha > 0.99
    lum = r.image.astype(np.float32).mean(-1)
    assert lum[fold & solid].mean() < 0.93 * lum[flat & solid].mean()


def test_fit_tps_interpolates_and_kornia_evaluates() -> None:
    g = torch.Generator().manual_seed(0)
    src = torch.rand(1, 9, 2, generator=g) * 2 - 1
    dst = src + 0.3 * torch.rand(1, 9, 2, generator=g)
    kw, aw = fit_tps(src, dst, reg=0.0)
    assert torch.allclose(warp_points_tps(src, src, kw, aw), dst, atol=1e-4)


def test_missing_shoulder_is_a_typed_error(engine: GeometricEngine) -> None:
    person = drawn_person()
    person.keypoints[5] = 0
    with pytest.raises(PoseIncomplete, match=r"LShoulder \(5\)"):
        engine.try_on(person, make_garment())


@pytest.mark.parametrize(("field", "value", "text"), [
    ("parse", np.zeros((10, 10), np.uint8), r"'parse' must be uint8 \(512, 384\); got uint8 \(10, 10\)"),
    ("parse", np.full((512, 384), 20, np.uint8), r"label 20"),
    ("keypoints", np.zeros((18, 3), np.float32), r"'keypoints' must be float32 \(25, 3\)"),
    ("image", np.zeros((512, 384, 3), np.float32), r"'person' must be uint8"),
])
def test_bad_person_inputs(engine: GeometricEngine, field: str, value: np.ndarray, text: str) -> None:
    person = drawn_person()
    setattr(person, field, value)
    with pytest.raises(InvalidInput, match=text):
        engine.try_on(person, make_garment())


def test_empty_garment_mask(engine: GeometricEngine) -> None:
    garment = make_garment()
    garment.mask = np.zeros_like(garment.mask)
    with pytest.raises(InvalidInput, match="garment_mask' is empty"):
        engine.try_on(drawn_person(), garment)


def test_person_without_upper_body_is_returned_unchanged(engine: GeometricEngine) -> None:
    person = drawn_person()
    person.parse = np.where(np.isin(person.parse, (5, 10, 14, 15)), 0, person.parse).astype(np.uint8)
    r = engine.try_on(person, make_garment())
    assert np.array_equal(r.image, person.image) and r.garment_alpha.max() == 0
