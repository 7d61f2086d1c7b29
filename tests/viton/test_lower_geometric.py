"""Bottoms and dresses on a constructed person seen whole (tests/viton/viton_synth.drawn_full_person:
exact parse and keypoints down to the ankles, the subject's left knee bent), where the real photos
cannot show it (the camera man's photo ends at his knees, under a long coat):

- both trouser hems land within 5 % of the leg length of where the landmarks put them, and the
  bent leg's trouser follows the shin past the knee;
- a skirt hangs (its hem is level, whatever the knee does);
- above the waistband, arms, hands, head and shoes are bit-identical for a bottom; head and shoes
  for a dress;
- shorts over long trousers leave the trousers below the shorts' hem as they were (no painted
  skin); >= 90 % of the changed pixels are the garment;
- without knees: LegsNotInView; one knee: the other mirrored.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from fidelity_metrics import explained_ratio
from photo_variants import demo_garments
from viton_synth import drawn_full_person

from viton import GarmentData, GeometricEngine, LegsNotInView, PersonData, TryOnOutput
from viton.geometric.legs import leg_frame, point_along
from viton.geometric.lower import plan_lower

HEM_TOLERANCE = 0.05
UPPER_BODY_RISE = 0.6       # x hip width above the hips: the test's upper-body line (engine: 0.5)
MIN_EXPLAINED = 0.90


def garments() -> dict[str, GarmentData]:
    return dict(demo_garments("bottom") + demo_garments("dress"))


@functools.cache
def dressed() -> tuple[PersonData, dict[str, TryOnOutput]]:
    p = drawn_full_person()
    engine = GeometricEngine()
    return p, {slug: engine.try_on(p, g) for slug, g in garments().items()}


def _changed(p: PersonData, r: TryOnOutput) -> np.ndarray:
    return (r.image != p.image).any(-1)


def _reach(r: TryOnOutput, centre: np.ndarray, direction: np.ndarray, half: float, window: float) -> float:
    ys, xs = np.nonzero(r.garment_alpha > 0.5)
    rel = np.stack([xs - centre[0], ys - centre[1]], axis=1).astype(np.float64)
    along, across = rel @ direction, np.abs(rel @ np.array([-direction[1], direction[0]]))
    sel = (across <= half) & (np.abs(along) <= window)
    assert sel.any(), f"no garment near {centre.round(1)}"
    return float(along[sel].max())


@pytest.mark.parametrize("slug", ["jeans-indigo", "shorts-khaki", "skirt-burgundy", "dress-teal"])
def test_hems_land_where_the_landmarks_put_them(slug: str) -> None:
    p, results = dressed()
    legs = leg_frame(p.keypoints, p.parse.shape)
    leg_len = min(legs.leg_length("r"), legs.leg_length("l"))
    plan, _ = plan_lower(p, garments()[slug])
    assert len(plan.hems) == (2 if slug in ("jeans-indigo", "shorts-khaki") else 1)
    for centre, direction in plan.hems:
        got = _reach(results[slug], centre, direction, 0.3 * legs.hip_w, 0.3 * leg_len)
        assert abs(got) <= HEM_TOLERANCE * leg_len, f"{slug}: hem {got:+.1f} px off (leg {leg_len:.0f} px)"


def test_a_trouser_leg_bends_at_the_knee() -> None:
    p, results = dressed()
    legs = leg_frame(p.keypoints, p.parse.shape)
    r = results["jeans-indigo"]
    for side in ("r", "l"):
        path = legs.leg_path(side)
        knee_arc = float(np.hypot(*(path[1] - path[0])))
        for frac in (0.2, 0.45, 0.7):   # along the shin, below the knee (the hem ends above the ankle)
            pt, _ = point_along(path, knee_arc + frac * float(np.hypot(*(path[2] - path[1]))))
            x, y = (int(round(v)) for v in pt)
            assert r.garment_alpha[y, x] > 0.5, f"leg {side}: no trouser on the shin at {frac:.0%} ({x}, {y})"
    # the bent (left) leg's shin turns back inward at the knee: the trouser follows it there
    assert legs.ankle_l[0] - legs.knee_l[0] < -10
    x, y = (int(round(v)) for v in legs.knee_l + (legs.ankle_l - legs.knee_l) * 0.6 + np.array([-30.0, 0.0]))
    assert r.garment_alpha[y, x] > 0.5, "the bent leg's trouser does not follow the shin inward"


def test_a_skirt_hangs_level() -> None:
    p, _ = dressed()
    plan, _ = plan_lower(p, garments()["skirt-burgundy"])
    assert plan.hem_corners is not None
    (_, y_r), (_, y_l) = plan.hem_corners
    assert abs(y_r - y_l) <= 2.0, "a skirt hangs from the waist: its hem does not follow the bent knee"


def test_protected_regions_are_bit_identical() -> None:
    p, results = dressed()
    kp = p.keypoints.astype(np.float64)
    hip_w = float(np.hypot(*(kp[12, :2] - kp[9, :2])))
    yy = np.mgrid[0:p.parse.shape[0], 0:p.parse.shape[1]][0]
    above = yy < (kp[9, 1] + kp[12, 1]) / 2 - UPPER_BODY_RISE * hip_w   # an upright body
    arms, shoes = np.isin(p.parse, (14, 15)), np.isin(p.parse, (18, 19))
    head = np.isin(p.parse, (2, 13))
    for slug, r in results.items():
        changed = _changed(p, r)
        assert not changed[shoes].any() and not changed[head].any(), slug
        if garments()[slug].category == "bottom":
            assert not changed[above].any(), f"{slug}: the upper body changed"
            assert not changed[arms].any(), f"{slug}: arms or hands changed"
        assert changed.mean() > 0.02, f"{slug}: drew almost nothing"
        ratio = explained_ratio(p, r)
        assert ratio >= MIN_EXPLAINED, f"{slug}: only {ratio:.1%} of the changed pixels are the garment"


def test_shorts_leave_the_old_trousers_below_their_hem() -> None:
    p, results = dressed()
    r = results["shorts-khaki"]
    plan, legs = plan_lower(p, garments()["shorts-khaki"])
    yy, xx = np.mgrid[0:p.parse.shape[0], 0:p.parse.shape[1]]
    leg_len = min(legs.leg_length("r"), legs.leg_length("l"))
    below = np.zeros(p.parse.shape, bool)
    for centre, direction in plan.hems:
        below |= ((xx - centre[0]) * direction[0] + (yy - centre[1]) * direction[1]) > HEM_TOLERANCE * leg_len
    old = (p.parse == 9) & below
    assert old.sum() > 5000 and not _changed(p, r)[old].any(), "the trousers below the shorts were painted over"


def test_legs_out_of_view_and_one_knee() -> None:
    p = drawn_full_person()
    g = garments()["jeans-indigo"]
    no_knees = p.keypoints.copy()
    no_knees[[10, 13]] = 0
    with pytest.raises(LegsNotInView, match="found RHip, LHip"):
        GeometricEngine().try_on(PersonData(p.image, p.parse, no_knees), g)
    no_hips = p.keypoints.copy()
    no_hips[[8, 9, 12]] = 0
    with pytest.raises(LegsNotInView):
        GeometricEngine().try_on(PersonData(p.image, p.parse, no_hips), garments()["dress-teal"])
    straight = drawn_full_person(bent_knee=False)
    one_knee = straight.keypoints.copy()
    one_knee[13] = 0
    legs = leg_frame(one_knee, straight.parse.shape)
    assert legs.knees_seen == 1
    np.testing.assert_allclose(legs.knee_l, straight.keypoints[13, :2], atol=2.0)   # mirrored: a symmetric pose
    assert GeometricEngine().try_on(PersonData(straight.image, straight.parse, one_knee), g).image.shape == \
        straight.image.shape
