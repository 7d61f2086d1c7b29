"""Issue 5's checks on real photos (astronaut, camera and their horizontal flips)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from node1.parsing import labels as L
from node1.parsing import parse_person
from tests.parsing.conftest import PHOTOS, Case

MASK_SLACK_PX = 2
TORSO_COVERAGE = 0.60
CHAIN_SLACK = 0.45          # x body scale: how far from its own shoulder-elbow-wrist-hand chain an arm pixel may be
CHAIN_FRACTION = 0.95
NOSE, LEFT_EYE, RIGHT_EYE = 0, 2, 5
L_SH, R_SH, L_EL, R_EL, L_WR, R_WR, L_HIP, R_HIP = 11, 12, 13, 14, 15, 16, 23, 24
HAND = {"left": (17, 19, 21), "right": (18, 20, 22)}


def _body_scale(lm: np.ndarray) -> float:
    sh = np.linalg.norm(lm[L_SH, :2] - lm[R_SH, :2])
    torso = np.linalg.norm((lm[L_SH, :2] + lm[R_SH, :2]) / 2 - (lm[L_HIP, :2] + lm[R_HIP, :2]) / 2)
    return float(max(sh, 0.6 * torso))


def _chain(lm: np.ndarray, side: str) -> np.ndarray:
    """(4, 2) shoulder, elbow, wrist, hand centre of the subject's `side` arm."""
    ids = (L_SH, L_EL, L_WR) if side == "left" else (R_SH, R_EL, R_WR)
    hand = lm[list(HAND[side]), :2].mean(axis=0)
    return np.vstack([lm[list(ids), :2], hand[None]])


def _distance_to_polyline(pts: np.ndarray, line: np.ndarray) -> np.ndarray:
    """(N,) distance of (N, 2) points to a polyline (K, 2)."""
    best = np.full(len(pts), np.inf)
    for a, b in zip(line[:-1], line[1:], strict=True):
        ab = b - a
        t = np.clip(((pts - a) @ ab) / max(float(ab @ ab), 1e-9), 0, 1)
        best = np.minimum(best, np.linalg.norm(pts - (a + t[:, None] * ab), axis=1))
    return best


@pytest.mark.parametrize("name", PHOTOS)
def test_labels_only_inside_person_mask(cases: dict[str, Case], name: str) -> None:
    c = cases[name]
    k = 2 * MASK_SLACK_PX + 1
    grown = cv2.dilate((c.mask >= 128).astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    outside = (c.parse > 0) & (grown == 0)
    assert c.parse.shape == c.image.shape[:2] and c.parse.dtype == np.uint8
    assert int(outside.sum()) == 0, f"{name}: {int(outside.sum())} labelled pixels outside the person mask"
    assert (c.parse > 0).sum() > 0.5 * (c.mask >= 128).sum(), f"{name}: most of the person is unlabelled"


@pytest.mark.parametrize("name", PHOTOS)
def test_face_covers_nose_and_eyes(cases: dict[str, Case], name: str) -> None:
    c = cases[name]
    for idx, what in ((NOSE, "nose"), (LEFT_EYE, "left eye"), (RIGHT_EYE, "right eye")):
        x, y = np.round(c.oracle[idx, :2]).astype(int)
        got = int(c.parse[y, x])
        assert got == L.FACE, f"{name}: the {what} at ({x}, {y}) is labelled {L.LABEL_NAMES[got]}, not face"
    assert c.result.face["valid"]


@pytest.mark.parametrize("name", PHOTOS)
def test_upper_clothes_cover_torso_polygon(cases: dict[str, Case], name: str) -> None:
    c = cases[name]
    poly = np.round(c.oracle[[L_SH, R_SH, R_HIP, L_HIP], :2]).astype(np.int32)
    inside = np.zeros(c.parse.shape, np.uint8)
    cv2.fillPoly(inside, [poly], 1)          # drawing clips the polygon to the image
    area = int(inside.sum())
    assert area > 1000, f"{name}: torso polygon only {area} px inside the image"
    frac = float((c.parse[inside == 1] == L.UPPER_CLOTHES).mean())
    assert frac >= TORSO_COVERAGE, f"{name}: upper-clothes cover {frac:.0%} of the torso polygon"


@pytest.mark.parametrize("name", PHOTOS)
def test_arm_labels_lie_along_their_own_chain(cases: dict[str, Case], name: str) -> None:
    """Skin-arm labels (14/15) and the arm regions (skin, sleeve or glove) follow the subject's own chain.

    Pooled over both arms: >= 95% of the labelled pixels lie within CHAIN_SLACK body scales of the
    shoulder-elbow-wrist-hand chain of their own side (mediapipe's oracle landmarks).
    """
    c = cases[name]
    slack = CHAIN_SLACK * _body_scale(c.oracle)
    parts = c.parts_full
    for what, sel in (("skin-arm label", {"left": c.parse == L.LEFT_ARM, "right": c.parse == L.RIGHT_ARM}),
                      ("arm region", {"left": (parts == 3) & (c.parse > 0), "right": (parts == 4) & (c.parse > 0)})):
        near, total = 0, 0
        for side, m in sel.items():
            ys, xs = np.nonzero(m)
            if len(xs):
                d = _distance_to_polyline(np.stack([xs, ys], 1).astype(np.float64), _chain(c.oracle, side))
                near, total = near + int((d <= slack).sum()), total + len(xs)
        if what == "arm region":
            assert total >= 0.01 * c.parse.size, f"{name}: arm regions hold only {total} px"
        if total:
            assert near / total >= CHAIN_FRACTION, \
                f"{name}: only {near / total:.0%} of the {what} pixels lie within {slack:.0f} px of their own chain"


@pytest.mark.parametrize("base", ["astronaut"])
def test_left_and_right_arms_swap_under_a_flip(cases: dict[str, Case], base: str) -> None:
    """Full pipeline: where an arm lies in both the photo and its mirrored flip, its side label swaps.

    Compared on the arm regions (skin, sleeve or glove: parts 3 / 4) and on the skin-arm labels 14 / 15,
    on the pixels both runs call an arm. Only the astronaut: on the camera man's crossed arms the pose
    estimator itself does not mirror (ours and mediapipe's oracle both call the wrist at (257, 221) the
    RIGHT wrist in the photo and in its flip, and the elbows move by ~80 px), so a full-pipeline swap
    cannot hold there; the parser's own side handling is checked on both photos below with a mirrored pose.
    """
    orig, flip = cases[base], cases[f"{base}_flipped"]
    po, pf = orig.parts_full * (orig.parse > 0), (flip.parts_full * (flip.parse > 0))[:, ::-1]
    both = np.isin(po, (3, 4)) & np.isin(pf, (3, 4))
    swapped = ((po == 3) & (pf == 4)) | ((po == 4) & (pf == 3))
    assert both.sum() >= 0.005 * po.size, f"{base}: the arm regions of the photo and its flip barely overlap"
    frac = swapped.sum() / both.sum()
    assert frac >= 0.9, f"{base}: only {frac:.0%} of the arm pixels swapped side under the flip"
    lo, lf = orig.parse, flip.parse[:, ::-1]
    arms = np.isin(lo, (L.LEFT_ARM, L.RIGHT_ARM)) & np.isin(lf, (L.LEFT_ARM, L.RIGHT_ARM))
    if arms.sum() >= 100:   # the test photos show little bare arm: gloves and sleeves (CIHP: not arm labels)
        same = (lo == lf) & arms
        assert same.sum() <= 0.1 * arms.sum(), f"{base}: {int(same.sum())} skin-arm pixels kept their side label"


@pytest.mark.parametrize("base", ["astronaut", "camera"])
def test_parser_swaps_sides_for_a_mirrored_pose(cases: dict[str, Case], base: str) -> None:
    """The flipped photo parsed with the original pose mirrored (x -> W-1-x, left/right landmarks swapped)
    gives the mirrored parse with 14 <-> 15 (and 16 <-> 17, 18 <-> 19) swapped, up to the working grid."""
    from node1.parsing import parse_person

    c = cases[base]
    W = c.image.shape[1]
    swap_lm = [0, 4, 5, 6, 1, 2, 3, 8, 7, 10, 9] + [k + (1 if k % 2 else -1) for k in range(11, 33)]
    lm = c.landmarks[swap_lm].copy()
    lm[:, 0] = W - 1 - lm[:, 0]
    res = parse_person(np.ascontiguousarray(c.image[:, ::-1]), lm, np.ascontiguousarray(c.mask[:, ::-1]), "cpu")
    lut = np.arange(20, dtype=np.uint8)
    lut[[14, 15, 16, 17, 18, 19]] = [15, 14, 17, 16, 19, 18]
    expect = lut[c.parse][:, ::-1]
    # pixels both runs give a sided label (skin vs sleeve may differ by a few resampled pixels; sides may not)
    sided = np.isin(expect, (14, 15, 16, 17, 18, 19)) & np.isin(res.parse, (14, 15, 16, 17, 18, 19))
    agree = float((res.parse == expect).mean())
    assert agree >= 0.97, f"{base}: mirrored parse agrees on only {agree:.1%} of the pixels"
    assert sided.sum() > 0, f"{base}: no left/right-labelled pixels to compare"
    if sided.sum():
        sided_agree = float((res.parse[sided] == expect[sided]).mean())
        assert sided_agree >= 0.98, f"{base}: left/right labels agree on only {sided_agree:.0%} after mirroring"


def test_hair_sits_above_the_face(cases: dict[str, Case]) -> None:
    for name, c in cases.items():
        ys_hair = np.nonzero(c.parse == L.HAIR)[0]
        ys_face = np.nonzero(c.parse == L.FACE)[0]
        assert len(ys_hair) > 500 and len(ys_face) > 500, name
        assert np.median(ys_hair) < np.median(ys_face), f"{name}: hair is not above the face"


@pytest.mark.parametrize("name", PHOTOS)
def test_a_coarser_grid_keeps_the_labels_and_the_mask_cut(cases: dict[str, Case], name: str) -> None:
    """The live mirror's coarser working grid (node1.live LIVE_PARSE_LONG_SIDE): the part map is
    coarser, the labels still cover exactly the person mask and mostly agree with the stills' grid."""
    from node1.live.frames import LIVE_PARSE_LONG_SIDE
    from node1.parsing import work_stride

    c = cases[name]
    coarse = parse_person(c.image, c.landmarks, c.mask, "cpu", work_long_side=LIVE_PARSE_LONG_SIDE)
    h, w = c.parse.shape
    s = work_stride(h, w, LIVE_PARSE_LONG_SIDE)
    assert s > work_stride(h, w)                                          # really coarser here
    assert coarse.parts.shape == (-(-h // s), -(-w // s))
    assert not coarse.parse[c.mask <= 127].any()                          # cut by the full-resolution mask
    assert ((coarse.parse > 0) == (c.parse > 0)).mean() >= 0.999         # (far-off mask bits may differ)
    person = c.parse > 0
    assert (coarse.parse[person] == c.parse[person]).mean() >= 0.95
    assert set(np.unique(coarse.parse)) <= set(np.unique(c.parse))      # no label invented
    labels, counts = np.unique(c.parse[person], return_counts=True)
    kept = set(labels[counts >= 0.005 * person.sum()].tolist())          # none of >= 0.5 % of the person lost
    assert kept <= set(np.unique(coarse.parse).tolist()), kept


def test_a_grid_too_coarse_is_refused() -> None:
    from node1.parsing import ParsingModule

    with pytest.raises(ValueError, match="work_long_side must be an int >= 32 px, got 8"):
        ParsingModule(torch.nn.Identity(), work_long_side=8)
