"""Try-on fidelity on real photos and the variants a new user's photos vary in (flipped, rotated,
scaled, darkened, cropped: tests/viton/photo_variants.py) x every demo garment, through node 1's
real preprocessing:

- protected regions are bit-identical: the face box, hair, the lower body (legs, trousers, shoes)
  and everything beyond the garment's hem line; with both hips in view, also a legs zone below
  them that the test draws itself from the keypoints;
- >= 90 % of the changed pixels are explained by the warped garment under some shading, and the
  warped garment holds the garment's own colours (no painted skin, no diffused fabric); its edge
  is anti-aliased all round (no hard seam against skin, hair, old clothes or background);
- the old clothes' fine pattern does not correlate with the result (high-pass luminance <= 0.2),
  and at most 40 % of their print/badge/collar contrast reaches the garment's shading;
- no NaN, deterministic.
Each photo variant is preprocessed once and each (variant, garment) dressed once per session.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pytest
from fidelity_metrics import (
    edge_softness,
    explained_ratio,
    garment_colour_ratio,
    highpass_correlation,
    pattern_transfer,
    protected_diffs,
)
from photo_variants import PHOTOS, VARIANTS, demo_garments, person

from viton import GeometricEngine, PersonData, TryOnOutput

CASES = [(name, kind) for name in PHOTOS for kind in VARIANTS]
MIN_EXPLAINED = 0.90
MIN_GARMENT_COLOURS = 0.95
MAX_HIGHPASS_CORRELATION = 0.2
MIN_EDGE_SOFTNESS = 0.97     # share of the garment's edge with an anti-aliasing ramp (main: >= 0.999)
MAX_PATTERN_TRANSFER = 0.4   # main transferred 56-95 % on the astronaut; what is left here is mostly folds
BELOW_HIPS = 0.35            # x torso length (neck -> mid-hip) below the hips: never touched
LEGS_HALF_WIDTH = 0.75       # x torso length: half width of that legs zone


@dataclass(frozen=True)
class Dressed:
    person: PersonData
    results: tuple[tuple[str, TryOnOutput], ...]  # (garment slug, result) for every demo garment


@functools.cache
def dressed(name: str, kind: str) -> Dressed:
    p = person(name, kind)
    assert p is not None, f"the pose found nobody in {name}/{kind}: choose variants it can read"
    engine = GeometricEngine()
    return Dressed(p, tuple((slug, engine.try_on(p, g)) for slug, g in demo_garments()))


def legs_zone(p: PersonData) -> np.ndarray | None:
    """(H, W) bool: more than BELOW_HIPS torso lengths below the mid-hip along the torso axis
    (neck -> mid-hip), within LEGS_HALF_WIDTH torso lengths of that axis; None when a hip or the
    neck is not in view. Drawn from the keypoints only, not from the engine."""
    kp = p.keypoints
    if min(kp[1, 2], kp[9, 2], kp[12, 2]) <= 0.1:
        return None
    neck = kp[1, :2].astype(np.float64)
    mid = (kp[9, :2].astype(np.float64) + kp[12, :2].astype(np.float64)) / 2
    torso = float(np.hypot(*(mid - neck)))
    down = (mid - neck) / max(torso, 1e-6)
    h, w = p.parse.shape
    yy, xx = np.mgrid[0:h, 0:w]
    t = (xx - mid[0]) * down[0] + (yy - mid[1]) * down[1]
    u = (xx - mid[0]) * down[1] - (yy - mid[1]) * down[0]
    return (t > BELOW_HIPS * torso) & (np.abs(u) <= LEGS_HALF_WIDTH * torso)


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_protected_regions_are_bit_identical(name: str, kind: str) -> None:
    d = dressed(name, kind)
    below_hips = legs_zone(d.person)
    for slug, r in d.results:
        for region, (largest, _) in protected_diffs(d.person, r.image).items():
            assert largest == 0, f"{name}/{kind} {slug}: {region} changed by up to {largest} grey levels"
        if below_hips is not None and below_hips.any():
            moved = np.abs(r.image.astype(np.int16) - d.person.image.astype(np.int16)).max(-1)[below_hips]
            assert moved.max() == 0, f"{name}/{kind} {slug}: pixels of the legs zone changed"
    if name == "camera":  # the hips are in view: the test's own hip line must have been checked
        assert below_hips is not None or kind in ("crop", "scale0.6"), f"{name}/{kind}: no hips found"


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_changes_are_the_garment(name: str, kind: str) -> None:
    d = dressed(name, kind)
    garments = dict(demo_garments())
    for slug, r in d.results:
        ratio = explained_ratio(d.person, r)
        assert ratio >= MIN_EXPLAINED, f"{name}/{kind} {slug}: only {ratio:.1%} of the changed pixels are the garment"
        colours = garment_colour_ratio(garments[slug], r)
        assert colours >= MIN_GARMENT_COLOURS, f"{name}/{kind} {slug}: warped garment off its colours ({colours:.1%})"
        soft = edge_softness(r)
        assert soft >= MIN_EDGE_SOFTNESS, f"{name}/{kind} {slug}: only {soft:.1%} of the garment's edge is anti-aliased"
        changed = (r.image != d.person.image).any(-1)
        assert changed.sum() > 0.02 * changed.size, f"{name}/{kind} {slug}: the try-on changed almost nothing"


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_old_pattern_does_not_print_through(name: str, kind: str) -> None:
    d = dressed(name, kind)
    for slug, r in d.results:
        corr = highpass_correlation(d.person, r)
        assert corr <= MAX_HIGHPASS_CORRELATION, f"{name}/{kind} {slug}: high-pass correlation {corr:.2f}"
        transfer = pattern_transfer(d.person, r)
        assert transfer is None or transfer <= MAX_PATTERN_TRANSFER, (
            f"{name}/{kind} {slug}: {transfer:.0%} of the old clothes' print contrast reaches the garment")


@pytest.mark.parametrize("name", PHOTOS)
def test_finite_and_deterministic(name: str) -> None:
    d = dressed(name, "original")
    engine = GeometricEngine()
    for (slug, r), (_, g) in zip(d.results, demo_garments(), strict=True):
        assert np.isfinite(r.garment_alpha).all() and 0.0 <= r.garment_alpha.min() and r.garment_alpha.max() <= 1.0
        again = engine.try_on(d.person, g)
        assert np.array_equal(again.image, r.image), f"{name} {slug}: a second run differs"
        assert np.array_equal(again.garment_alpha, r.garment_alpha)


def test_engine_declares_and_reads_only_photo_parse_keypoints() -> None:
    assert GeometricEngine.reads == ("person", "parse", "keypoints")
    p = person("astronaut", "original")
    assert p is not None and not hasattr(p, "pose_render") and p.person_mask is None  # and try_on ran on them above
    slug, g = demo_garments()[0]
    r = GeometricEngine().try_on(p, g)
    assert r.image.shape == p.image.shape and not np.array_equal(r.image, p.image), slug
