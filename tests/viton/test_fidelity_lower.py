"""Bottoms and dresses on real photos with the legs in view (the camera man and his variants:
tests/viton/photo_variants.py) x every demo bottom and dress, through node 1's real preprocessing:

- for a bottom, the face and the upper body (everything above a line the test draws itself 0.6 hip
  widths above the hip keypoints, the engine's waistband is at 0.5) are bit-identical; for a dress the
  face box and hair; for both, shoes and hands (the arm labels around the wrists) are bit-identical;
- >= 90 % of the changed pixels are the warped garment under some shading (no painted skin), and the
  warped garment holds the garment's own colours;
- the garment's hem lies within 5 % of the leg length (hip -> knee -> ankle) of where its landmarks put
  it (`viton.geometric.lower.plan_lower`: a trouser leg's length x the waist's scale along its leg);
- a photo cut at the waist (the astronaut; the camera man cut above his hips or his knees) gets the
  typed LegsNotInView, here and through the VITON service (code legs_not_in_view);
- no NaN, deterministic; VITON-HD stays tops-only.
"""

from __future__ import annotations

import functools
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import pytest
from fidelity_metrics import explained_ratio, garment_colour_ratio
from photo_variants import demo_garments, make_person, person

from viton import GarmentData, GeometricEngine, LegsNotInView, PersonData, TryOnOutput
from viton.geometric.legs import leg_frame
from viton.geometric.lower import plan_lower

LEG_VARIANTS = ("original", "flip", "dark", "rotate+6", "scale0.6")   # hips and a knee in view
MIN_EXPLAINED = 0.90
MIN_GARMENT_COLOURS = 0.95
HEM_TOLERANCE = 0.05          # x the leg length
UPPER_BODY_RISE = 0.6         # x hip-joint distance above the hips: the test's own upper-body line
HAND_RADIUS = 0.5             # x hip-joint distance around a wrist keypoint (the engine protects 0.6)
MIN_CHANGED = 0.001           # share of the photo a try-on must change (it drew something; a long coat hides most)
SERVICE_TIMEOUT_S = 30.0


def lower_garments() -> tuple[tuple[str, GarmentData], ...]:
    return demo_garments("bottom") + demo_garments("dress")


@dataclass(frozen=True)
class Dressed:
    person: PersonData
    results: tuple[tuple[str, GarmentData, TryOnOutput], ...]


@functools.cache
def dressed(kind: str) -> Dressed:
    p = person("camera", kind)
    assert p is not None, f"the pose found nobody in camera/{kind}"
    engine = GeometricEngine()
    return Dressed(p, tuple((slug, g, engine.try_on(p, g)) for slug, g in lower_garments()))


def _diff(p: PersonData, r: TryOnOutput) -> np.ndarray:
    return np.abs(r.image.astype(np.int16) - p.image.astype(np.int16)).max(-1)


def upper_body(p: PersonData) -> np.ndarray:
    """(H, W) bool: the side of a line UPPER_BODY_RISE hip widths above the hip keypoints away from the
    knees, plus the face box and hair. Drawn from the keypoints and the parse map, not by the engine."""
    kp = p.keypoints.astype(np.float64)
    hr, hl = kp[9, :2], kp[12, :2]
    hip_w = float(np.hypot(*(hl - hr)))
    across = (hl - hr) / hip_w
    down = np.array([-across[1], across[0]])
    knee = next(kp[i, :2] for i in (10, 13) if kp[i, 2] > 0.1)
    if float(np.dot(knee - (hr + hl) / 2, down)) < 0:
        down = -down
    h, w = p.parse.shape
    yy, xx = np.mgrid[0:h, 0:w]
    origin = (hr + hl) / 2 - down * UPPER_BODY_RISE * hip_w
    above = (xx - origin[0]) * down[0] + (yy - origin[1]) * down[1] < 0
    return above | face_and_hair(p)


def face_and_hair(p: PersonData) -> np.ndarray:
    """(H, W) bool: the face label's bounding box and hair."""
    face = np.zeros(p.parse.shape, bool)
    ys, xs = np.nonzero(p.parse == 13)
    if ys.size:
        face[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
    return face | (p.parse == 2)


def hands_and_shoes(p: PersonData) -> np.ndarray:
    """(H, W) bool: shoes (18, 19), gloves (3) and the arm labels within HAND_RADIUS hip widths of a wrist."""
    import cv2

    kp = p.keypoints
    hip_w = float(np.hypot(*(kp[12, :2] - kp[9, :2])))
    near = np.zeros(p.parse.shape, np.uint8)
    for i in (4, 7):
        if kp[i, 2] > 0.1:
            cv2.circle(near, (int(round(kp[i, 0])), int(round(kp[i, 1]))), int(HAND_RADIUS * hip_w), 1, -1)
    arms = np.isin(p.parse, (14, 15)) & (near > 0)
    return arms | np.isin(p.parse, (3, 18, 19))


@pytest.mark.parametrize("kind", LEG_VARIANTS)
def test_upper_body_hands_and_shoes_are_bit_identical(kind: str) -> None:
    d = dressed(kind)
    top, ends = upper_body(d.person), hands_and_shoes(d.person)
    assert top.any() and top.mean() < 0.95
    for slug, g, r in d.results:
        diff = _diff(d.person, r)
        if g.category == "bottom":
            assert diff[top].max() == 0, f"camera/{kind} {slug}: the upper body changed by up to {diff[top].max()}"
        else:
            assert diff[face_and_hair(d.person)].max() == 0, f"camera/{kind} {slug}: face or hair changed"
        if ends.any():
            assert diff[ends].max() == 0, f"camera/{kind} {slug}: hands or shoes changed by up to {diff[ends].max()}"


@pytest.mark.parametrize("kind", LEG_VARIANTS)
def test_changes_are_the_garment(kind: str) -> None:
    d = dressed(kind)
    for slug, g, r in d.results:
        assert np.isfinite(r.garment_alpha).all() and 0.0 <= r.garment_alpha.min() <= r.garment_alpha.max() <= 1.0
        changed = (r.image != d.person.image).any(-1)
        assert changed.mean() > MIN_CHANGED, f"camera/{kind} {slug}: the try-on changed almost nothing"
        ratio = explained_ratio(d.person, r)
        assert ratio >= MIN_EXPLAINED, f"camera/{kind} {slug}: only {ratio:.1%} of the changed pixels are the garment"
        colours = garment_colour_ratio(g, r)
        assert colours >= MIN_GARMENT_COLOURS, f"camera/{kind} {slug}: warped garment off its colours ({colours:.1%})"


def _measured_hem(r: TryOnOutput, centre: np.ndarray, direction: np.ndarray, half_width: float,
                  reach: float) -> float | None:
    """How far beyond `centre` along `direction` the solid garment (alpha > 0.5) reaches within a corridor
    of `half_width` px around that line, among pixels within `reach` px of the centre; None if none."""
    ys, xs = np.nonzero(r.garment_alpha > 0.5)
    rel = np.stack([xs - centre[0], ys - centre[1]], axis=1)
    along = rel @ direction
    across = np.abs(rel @ np.array([-direction[1], direction[0]]))
    sel = (across <= half_width) & (np.abs(along) <= reach)
    return float(along[sel].max()) if sel.any() else None


@pytest.mark.parametrize("kind", LEG_VARIANTS)
def test_hem_lies_where_the_landmarks_put_it(kind: str) -> None:
    d = dressed(kind)
    h, w = d.person.parse.shape
    legs = leg_frame(d.person.keypoints, (h, w))
    leg_len = max(legs.leg_length("r"), legs.leg_length("l"))
    checked = 0
    for slug, g, r in d.results:
        plan, _ = plan_lower(d.person, g)
        for i, (centre, direction) in enumerate(plan.hems):
            seen_knee = d.person.keypoints[10 if i == 0 else 13, 2] > 0.1
            if len(plan.hems) == 2 and not seen_knee:
                continue   # a leg the pose did not see (its knee mirrored): its place is a guess
            half = 0.3 * legs.hip_w if len(plan.hems) == 2 else 0.5 * legs.hip_w
            got = _measured_hem(r, centre, direction, half, 0.3 * leg_len)
            inside = 0 <= centre[0] < w and 0 <= centre[1] < h
            if inside:
                assert got is not None, f"camera/{kind} {slug}: no garment near its hem {centre.round(1)}"
                assert abs(got) <= HEM_TOLERANCE * leg_len, (
                    f"camera/{kind} {slug}: hem {got:+.1f} px from where its landmarks put it "
                    f"(tolerance {HEM_TOLERANCE * leg_len:.1f} px)")
                checked += 1
            else:   # the hem lies below the photo: the garment runs to the photo's edge
                ys = np.nonzero(r.garment_alpha > 0.5)[0]
                assert ys.size and ys.max() >= h - 1 - HEM_TOLERANCE * leg_len, f"camera/{kind} {slug}"
    # the camera man is cut off near his knees: the shorts' hem on the leg the pose saw is in view
    assert checked >= 1, f"camera/{kind}: no hem in view was checked"


WAIST_CUT_ROWS = 300   # the camera man's hips lie at rows 322-344


def _waist_cut_people() -> list[tuple[str, PersonData | None]]:
    """The astronaut (a real photo cut at the waist: the pose has no hips), the camera man cut above his
    knees (the 'crop' variant: hips, no knee) and his preprocessed photo cut above the hips with its
    keypoints as found on the whole photo (hips and knee below the cut: outside the photo; the pose
    detector itself finds nobody in that crop)."""
    whole = person("camera", "original")
    assert whole is not None
    cut = make_person(np.ascontiguousarray(whole.image[:WAIST_CUT_ROWS]),
                      np.ascontiguousarray(whole.parse[:WAIST_CUT_ROWS]), whole.keypoints)
    return [("astronaut", person("astronaut", "original")), ("camera crop", person("camera", "crop")),
            ("camera above the hips", cut)]


def test_a_photo_cut_at_the_waist_gets_legs_not_in_view() -> None:
    from transport import Frame
    from viton.contract import Kind, viton_request
    from viton.service import TryOnService

    engine = GeometricEngine()
    service = TryOnService(engine)
    service.start()
    try:
        for name, p in _waist_cut_people():
            assert p is not None, name
            for slug, g in lower_garments():
                with pytest.raises(LegsNotInView, match="legs are not in view") as err:
                    engine.try_on(p, g)
                assert err.value.code == "legs_not_in_view", (name, slug)
            tops = demo_garments("top")
            assert engine.try_on(p, tops[0][1]).image.shape == p.image.shape   # a top is fine on it
            slug, g = lower_garments()[0]
            person_t = {"person": p.image, "parse": p.parse, "keypoints": p.keypoints}
            meta, tensors = viton_request(person_t, g.image, g.mask, g.landmarks, garment_kind=g.kind,
                                          garment_id="0" * 64, origin_id="t")
            answer: Future[Frame] = Future()
            service.handle(Frame(Kind.TRYON, f"legs-{name}", meta=meta, tensors=tensors), answer.set_result)
            reply = answer.result(timeout=SERVICE_TIMEOUT_S)
            assert reply.kind == Kind.ERROR and reply.meta["code"] == "legs_not_in_view", (name, reply.meta)
    finally:
        service.stop()


def test_landmark_rows_must_match_the_category() -> None:
    from viton import InvalidInput

    p = person("camera", "original")
    assert p is not None
    slug, g = demo_garments("bottom")[0]
    wrong = GarmentData(g.image, g.mask, np.zeros((9, 2), np.float32), g.kind)
    with pytest.raises(InvalidInput, match=r"a bottom \('trousers'\) has 7 landmarks"):
        GeometricEngine().try_on(p, wrong)


@pytest.mark.parametrize("kind", ("original",))
def test_deterministic(kind: str) -> None:
    d = dressed(kind)
    engine = GeometricEngine()
    for slug, g, r in d.results:
        again = engine.try_on(d.person, g)
        assert np.array_equal(again.image, r.image) and np.array_equal(again.garment_alpha, r.garment_alpha), slug


def test_vitonhd_dresses_tops_only() -> None:
    from viton import InvalidInput
    from viton.vitonhd.engine import VitonHDEngine

    slug, g = demo_garments("bottom")[0]
    p = person("camera", "original")
    assert p is not None
    engine = VitonHDEngine.__new__(VitonHDEngine)   # the refusal comes before any network runs
    with pytest.raises(InvalidInput, match="dresses tops only"):
        engine.try_on(p, g)


def test_the_service_dresses_a_bottom_as_the_engine_does() -> None:
    from transport import Frame
    from viton.contract import Kind, viton_request
    from viton.service import TryOnService

    d = dressed("original")
    service = TryOnService(GeometricEngine())
    service.start()
    try:
        for slug, g, r in d.results[:2]:
            person_t = {"person": d.person.image, "parse": d.person.parse, "keypoints": d.person.keypoints}
            meta, tensors = viton_request(person_t, g.image, g.mask, g.landmarks, garment_kind=g.kind,
                                          garment_id="1" * 64, origin_id="t")
            answer: Future[Frame] = Future()
            service.handle(Frame(Kind.TRYON, f"bottom-{slug}", meta=meta, tensors=tensors), answer.set_result)
            reply = answer.result(timeout=SERVICE_TIMEOUT_S)
            assert reply.kind == Kind.RESULT, (slug, reply.meta)
            assert np.array_equal(reply.tensors["image"], r.image), slug
    finally:
        service.stop()


def test_contact_sheet_marks_legs_not_in_view() -> None:
    from viton.gallery import LABEL_BAND_PX, contact_sheet

    whole = person("camera", "original")
    assert whole is not None
    cut = make_person(np.ascontiguousarray(whole.image[:WAIST_CUT_ROWS]),
                      np.ascontiguousarray(whole.parse[:WAIST_CUT_ROWS]), whole.keypoints)
    sheet = contact_sheet([("cut", cut), ("whole", whole)], list(lower_garments()[:1]), cell=64)
    band = LABEL_BAND_PX + 64
    assert sheet.shape[:2] == (3 * band, 2 * 64)   # header + two rows, photo + one garment
    cut_cell, whole_cell = sheet[band:2 * band, 64:], sheet[2 * band:, 64:]
    assert cut_cell.mean() > whole_cell.mean()   # the refused cell: the photo dimmed towards the background
