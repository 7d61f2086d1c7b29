"""The warp's work kept between try-ons of a garment (viton.geometric.memo): reused when the inputs are
the same, never for another garment or another pose, and never changing a pixel
(node1.live's dead band, tested in tests/live/test_tracking.py, keeps a still shopper's landmarks the same)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from photo_variants import demo_garments
from viton_synth import drawn_full_person, drawn_person, make_garment

from viton.engine import GarmentData, PersonData
from viton.geometric import GeometricEngine
from viton.geometric.memo import BOX_SNAP_PX, snap_box, snapped_factor

KEY = "ab" * 32


def _keyed(g: GarmentData, key: str = KEY) -> GarmentData:
    return dataclasses.replace(g, key=key)


def _same(a, b) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.warped_garment, b.warped_garment)
    np.testing.assert_array_equal(a.garment_alpha, b.garment_alpha)


@pytest.mark.parametrize("kind", ["tshirt", "longsleeve"])
def test_a_repeated_try_on_reuses_the_warp_and_gives_the_same_pixels(kind: str) -> None:
    person, garment = drawn_person(), make_garment(kind)
    kept, fresh = GeometricEngine(), GeometricEngine()
    first = kept.try_on(person, _keyed(garment))
    assert kept.memo.stats.as_dict() == {"prepared_hits": 0, "prepared_misses": 1, "sampled_hits": 0,
                                         "sampled_misses": 1}
    again = kept.try_on(person, _keyed(garment))
    assert kept.memo.stats.prepared_hits == 1 and kept.memo.stats.sampled_hits == 1
    _same(first, again)
    _same(first, fresh.try_on(person, garment))   # nothing kept: the same computation, the same pixels
    assert fresh.memo.stats.as_dict() == {"prepared_hits": 0, "prepared_misses": 0, "sampled_hits": 0,
                                          "sampled_misses": 0}


@pytest.mark.parametrize("category", ["bottom", "dress"])
def test_a_bottom_or_a_dress_reuses_its_warp_too(category: str) -> None:
    person, garment = drawn_full_person(), demo_garments(category)[0][1]
    engine = GeometricEngine()
    first = engine.try_on(person, _keyed(garment))
    again = engine.try_on(person, _keyed(garment))
    assert engine.memo.stats.sampled_hits == 1
    _same(first, again)
    _same(first, GeometricEngine().try_on(person, garment))


def test_a_moved_shopper_reuses_the_prepared_garment_but_not_the_sampled_warp() -> None:
    person, garment = drawn_person(), _keyed(make_garment("tshirt"))
    engine = GeometricEngine()
    engine.try_on(person, garment)
    moved_kp = person.keypoints.copy()
    moved_kp[moved_kp[:, 2] > 0, 0] += 1.5           # the whole body 1.5 px to the right
    moved = dataclasses.replace(person, keypoints=moved_kp)
    out = engine.try_on(moved, garment)
    assert engine.memo.stats.prepared_hits == 1 and engine.memo.stats.sampled_misses == 2
    _same(out, GeometricEngine().try_on(moved, dataclasses.replace(garment, key="")))


def test_another_garment_under_the_same_id_is_not_mistaken_for_it() -> None:
    person = drawn_person()
    red, blue = make_garment("tshirt", (200, 30, 30)), make_garment("tshirt", (30, 30, 200))
    engine = GeometricEngine()
    engine.try_on(person, _keyed(red))
    out = engine.try_on(person, _keyed(blue))           # a caller's mistake: blue sent under red's id
    assert engine.memo.stats.prepared_hits == 0
    _same(out, GeometricEngine().try_on(person, blue))


def test_kept_work_is_bounded_and_read_only() -> None:
    person, garment = drawn_person(), make_garment("tshirt")
    engine = GeometricEngine()
    for k in range(12):
        kp = person.keypoints.copy()
        kp[kp[:, 2] > 0, 1] += k                          # twelve poses
        engine.try_on(dataclasses.replace(person, keypoints=kp), _keyed(garment))
    kept = engine.memo._kept["sampled"]
    assert len(kept) == 8
    sampled, sleeve = next(iter(kept.values()))
    assert not sampled.flags.writeable and not sleeve.flags.writeable


def test_snapping() -> None:
    assert snap_box((17, 3, 40, 33), (100, 50)) == (16, 0, 48, 48)
    assert snap_box((0, 0, 45, 99), (99, 45)) == (0, 0, 45, 99)       # clipped to the image
    for scale in (0.1, 0.37, 0.5, 0.9, 1.3):
        f = snapped_factor(scale)
        assert 1.5 * scale * 2 ** (-1 / 32) - 1e-9 <= f <= 1.5 * scale * 2 ** (1 / 32) + 1e-9
    assert snapped_factor(0.370) == snapped_factor(0.371)               # a shopper who breathes keeps it
    assert BOX_SNAP_PX == 16


def test_person_data_is_unchanged_by_a_try_on() -> None:
    person, garment = drawn_person(), _keyed(make_garment("tshirt"))
    before = PersonData(person.image.copy(), person.parse.copy(), person.keypoints.copy())
    engine = GeometricEngine()
    engine.try_on(person, garment)
    engine.try_on(person, garment)
    np.testing.assert_array_equal(person.image, before.image)
    np.testing.assert_array_equal(person.parse, before.parse)
