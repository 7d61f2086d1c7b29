"""Acceptance checks on real photos (astronaut, camera and their mirror images) with every demo
garment: unchanged pixels outside the changeable region, coverage >= 85% of the upper clothes,
spill <= 5% outside the person, no NaN, deterministic.

Person data come from node 1's real preprocessing (`node1.preprocess.preprocess`, through the
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
from viton.geometric.body import body_frame, fit_hem_to_clothes
from viton.geometric.engine import arm_zone
from viton.geometric.regions import UPPER_LABELS


@functools.cache
def demo_garments() -> list[GarmentData]:
    from garments.demo import DEMO_DESIGNS, render_garment

    out = []
    for design in DEMO_DESIGNS:
        r = render_garment(design)
        out.append(GarmentData(image=r.image, mask=r.mask, landmarks=np.asarray(r.landmarks, np.float32),
                               kind=design.kind))
    return out


_PEOPLE: dict[tuple[str, bool], PersonData] = {}


def preprocessed(name: str, photo: np.ndarray, flip: bool) -> PersonData:
    """Real preprocessing of the photo (or its mirror image), once per test session."""
    from node1.cli.tryon import _person

    if (name, flip) not in _PEOPLE:
        _PEOPLE[name, flip] = _person(np.ascontiguousarray(photo[:, ::-1] if flip else photo))
    return _PEOPLE[name, flip]


@pytest.mark.parametrize("photo_name", ["astronaut", "camera_rgb"])
@pytest.mark.parametrize("flip", [False, True])
def test_real_photo_acceptance(photo_name: str, flip: bool, request: pytest.FixtureRequest) -> None:
    person = preprocessed(photo_name, request.getfixturevalue(photo_name), flip)
    engine = GeometricEngine()
    body = fit_hem_to_clothes(body_frame(person.keypoints), np.isin(person.parse, UPPER_LABELS).astype(np.uint8))
    h, w = person.parse.shape
    arms = arm_zone(body, (0, 0, w, h)).astype(bool)
    for i, garment in enumerate(demo_garments()):
        a = engine.try_on(person, garment)
        if i == 0:
            b = engine.try_on(person, garment)
            assert np.array_equal(a.image, b.image) and np.array_equal(a.garment_alpha, b.garment_alpha)
        coverage, spill = check_invariants(person, a.image, a.garment_alpha)
        if garment.kind == "tank":
            # a sleeveless garment leaves the arms bare by design: on a long-sleeved photo (the
            # astronaut's suit) 85% of the old clothes, sleeves included, is not what a tank
            # top covers; measured there outside the arms
            upper = np.isin(person.parse, UPPER_LABELS) & ~arms
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
