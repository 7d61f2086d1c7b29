"""Acceptance checks on real photos (astronaut, camera and their mirror images) with every demo
garment: unchanged pixels outside the changeable region, the garment covers >= 85% of the old
upper clothes inside the core of its own torso (armpits to hem, 15 % off each side: beyond the
garment the old clothes stay, by design),
spill <= 5% outside the person, no NaN, deterministic.

Person data come from node 1's real preprocessing (`node1.tryon.preprocess.preprocess`, through the
CLI's adapter); garments from the demo catalog (`garments.demo`). Each test skips, saying which
is missing, when they are not in the tree. `test_hand_labelled_astronaut` runs now on
a hand-labelled astronaut (keypoints read off the photo, colour-threshold parse).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from test_geometric import check_invariants
from viton_synth import astronaut_person, make_garment

from viton import GarmentData, GeometricEngine, PersonData
from viton.geometric.body import BodyFrame, body_frame
from viton.geometric.regions import UPPER_LABELS


@functools.cache
def demo_garments() -> list[GarmentData]:
    from garments import category_of
    from garments.demo import DEMO_DESIGNS, render_garment

    out = []
    for design in (d for d in DEMO_DESIGNS if category_of(d.kind) == "top"):   # bottoms: test_fidelity_lower
        r = render_garment(design)
        out.append(GarmentData(image=r.image, mask=r.mask, landmarks=np.asarray(r.landmarks, np.float32),
                               kind=design.kind))
    return out


_PEOPLE: dict[tuple[str, bool], PersonData] = {}


def preprocessed(name: str, photo: np.ndarray, flip: bool) -> PersonData:
    """Real preprocessing of the photo (or its mirror image), once per test session."""
    from node1.tryon.preprocess import preprocess

    if (name, flip) not in _PEOPLE:
        pre = preprocess(np.ascontiguousarray(photo[:, ::-1] if flip else photo), device="cpu")
        _PEOPLE[name, flip] = PersonData(image=pre.image, parse=pre.parse, keypoints=pre.body25)
    return _PEOPLE[name, flip]


CORE_INSET = 0.15  # of the torso's width, off each side: under a hanging arm the garment's side may open


def torso_quad(body: BodyFrame, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the core of the garment's own torso, the quadrilateral armpit_r, armpit_l,
    hem_l, hem_r with CORE_INSET of its width taken off each side."""
    import cv2

    def inset(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return a + CORE_INSET * (b - a), b + CORE_INSET * (a - b)

    pit_r, pit_l = inset(body.armpit_r, body.armpit_l)
    hem_r, hem_l = inset(body.hem_r, body.hem_l)
    quad = np.zeros(shape, np.uint8)
    pts = np.round(np.array([pit_r, pit_l, hem_l, hem_r])).astype(np.int32)
    cv2.fillPoly(quad, [pts], 1)
    return quad.astype(bool)


@pytest.mark.parametrize("photo_name", ["astronaut", "camera_rgb"])
@pytest.mark.parametrize("flip", [False, True])
def test_real_photo_acceptance(photo_name: str, flip: bool, request: pytest.FixtureRequest) -> None:
    person = preprocessed(photo_name, request.getfixturevalue(photo_name), flip)
    engine = GeometricEngine()
    # the new garment replaces the old clothes inside its own torso; beyond its hem and sleeves the
    # old clothes are kept as they are (a tee over a coat leaves the coat's tails)
    upper = np.isin(person.parse, UPPER_LABELS) & torso_quad(body_frame(person.keypoints), person.parse.shape)
    for i, garment in enumerate(demo_garments()):
        a = engine.try_on(person, garment)
        if i == 0:
            b = engine.try_on(person, garment)
            assert np.array_equal(a.image, b.image) and np.array_equal(a.garment_alpha, b.garment_alpha)
        _, spill = check_invariants(person, a.image, a.garment_alpha)
        coverage = float(((a.garment_alpha > 0.5) & upper).sum() / upper.sum())
        what = f"{photo_name} flip={flip} {garment.kind}"
        assert coverage >= 0.85, f"{what}: the garment covers {coverage:.1%} of the upper clothes"
        assert spill <= 0.05, f"{what}: {spill:.1%} of the garment lies outside the person"


@pytest.mark.parametrize("kind", ["tshirt", "longsleeve", "tank"])
def test_hand_labelled_astronaut(astronaut: np.ndarray, kind: str) -> None:
    person = astronaut_person(astronaut)
    r = GeometricEngine().try_on(person, make_garment(kind))
    coverage, spill = check_invariants(person, r.image, r.garment_alpha)
    assert spill <= 0.05, f"{kind}: spill {spill:.1%}"
    # measured on the torso (between the shoulder keypoints, below them): the astronaut's suit
    # has sleeves to the wrist and is bulky; a t-shirt or tank cannot and should not cover those
    kp = person.keypoints
    torso = np.zeros_like(person.parse, dtype=bool)
    torso[int(kp[2, 1]):, int(kp[2, 0]):int(kp[5, 0])] = True
    upper = (person.parse == 5) & torso
    cov = float(((r.garment_alpha > 0.5) & upper).sum() / upper.sum())
    # 0.80 here, not the acceptance 0.85: the threshold parse has holes and ragged edges (the
    # acceptance figure is checked on real preprocessing in test_real_photo_acceptance)
    assert cov >= 0.80, f"{kind}: the garment covers {cov:.1%} of the suit's torso"
    assert not np.isnan(r.image.astype(np.float32)).any()
