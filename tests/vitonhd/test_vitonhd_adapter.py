"""The adapter from our data to VITON-HD's inputs, on a real photo (skimage's astronaut).

The parse and keypoints of the photo are hand-drawn stand-ins (tests/vitonhd/scene.py) until the
parsing and pose helpers' outputs are wired in; the checks are those of the inference contract.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from viton.engine import GarmentData, PersonData
from viton.errors import InvalidInput, PoseIncomplete
from viton.skeleton import render_skeleton
from viton.vitonhd import InputError, KeypointsMissing, Letterbox, VitonHDError, VitonHDInputs, make_inputs
from viton.vitonhd.agnostic import complete_keypoints, parse_agnostic
from viton.vitonhd.labels import CIHP_TO_SEG13, SEG13_TO_ALIAS7, seg13_to_alias7

GRAY = (128 / 255 - 0.5) / 0.5   # PIL 'gray' after normalisation


@pytest.fixture(scope="module")
def inputs(person: PersonData, garment: GarmentData) -> VitonHDInputs:
    return make_inputs(person, garment)


def test_label_tables_follow_the_contract() -> None:
    # 13 groups: 0 bg {0,10}, 1 hair {1,2}, 2 face {4,13}, 3 upper {5,6,7}, 4 bottom {9,12}, 5 L-arm {14},
    # 6 R-arm {15}, 7 L-leg {16}, 8 R-leg {17}, 9 L-shoe {18}, 10 R-shoe {19}, 11 socks {8}, 12 noise {3,11}.
    assert CIHP_TO_SEG13 == (0, 1, 1, 12, 2, 3, 3, 3, 11, 4, 0, 12, 4, 2, 5, 6, 7, 8, 9, 10)
    # 7 groups: 0 bg {0}, 1 paste {2,4,7,8,9,10,11}, 2 upper {3}, 3 hair {1}, 4 L-arm {5}, 5 R-arm {6}, 6 noise {12}.
    assert SEG13_TO_ALIAS7 == (0, 3, 1, 2, 1, 4, 5, 1, 1, 1, 1, 1, 6)
    onehot = torch.eye(13).view(1, 13, 13, 1)
    assert seg13_to_alias7(onehot)[0, :, :, 0].argmax(0).tolist() == list(SEG13_TO_ALIAS7)


def test_shapes_ranges_and_one_hot(inputs: VitonHDInputs) -> None:
    full = (1024, 768)
    expect = {"cloth": 3, "cloth_mask": 1, "pose": 3, "parse_agnostic": 13, "img_agnostic": 3}
    for name, channels in expect.items():
        t = getattr(inputs, name)
        assert t.shape == (1, channels, *full), name
        assert t.dtype == torch.float32, name
    for name in ("cloth", "pose", "img_agnostic"):
        t = getattr(inputs, name)
        assert float(t.min()) >= -1.0 and float(t.max()) <= 1.0, name
    assert set(inputs.cloth_mask.unique().tolist()) == {0.0, 1.0}
    parse = inputs.parse_agnostic
    assert set(parse.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(parse.sum(dim=1), torch.ones(1, *full))      # exactly one class per pixel
    assert parse[:, 3].sum() == 0                                    # 'upper' is always empty
    assert parse[:, 2].sum() > 0 and parse[:, 1].sum() > 0          # face and hair survive


def test_cloth_is_white_outside_its_mask(inputs: VitonHDInputs) -> None:
    # Bilinear resizing blends the cloth edge; 3 px away from the (nearest-resized) mask it is pure white.
    near = torch.nn.functional.max_pool2d(inputs.cloth_mask, kernel_size=7, stride=1, padding=3)[0, 0] > 0
    assert torch.all(inputs.cloth[0][:, ~near] == 1.0)
    inside = inputs.cloth[0][:, inputs.cloth_mask[0, 0] > 0]
    assert float(inside.std()) > 0.1                                 # real texture inside


def test_letterbox_of_the_square_photo(inputs: VitonHDInputs, person: PersonData) -> None:
    assert inputs.frame == Letterbox(src=(512, 512), dst=(1024, 768), box=(128, 0, 768, 768))
    # Padding rows: white person photo, black pose render, background parse.
    assert torch.all(inputs.img_agnostic[0, :, :128] == 1.0)
    assert torch.all(inputs.pose[0, :, :128] == -1.0)
    assert torch.all(inputs.parse_agnostic[0, 0, :128] == 1.0)
    # Keypoints scale by 1.5 about pixel centres and shift down by 128; missing ones stay (0, 0).
    x, y = person.keypoints[1, :2]
    np.testing.assert_allclose(inputs.keypoints[1], [(x + 0.5) * 1.5 - 0.5, (y + 0.5) * 1.5 - 0.5 + 128])
    assert tuple(inputs.keypoints[10]) == (0.0, 0.0)


def test_agnostic_image_grays_torso_and_keeps_the_face(inputs: VitonHDInputs, person: PersonData) -> None:
    img = inputs.img_agnostic[0]
    neck_x, neck_y = (int(round(v)) for v in inputs.keypoints[1])
    assert torch.allclose(img[:, neck_y + 40, neck_x], torch.full((3,), GRAY), atol=1e-6)  # torso / neck gray
    mid_shoulder = (inputs.keypoints[2] + inputs.keypoints[5]) / 2
    sx, sy = (int(round(v)) for v in mid_shoulder)
    assert torch.allclose(img[:, sy + 100, sx], torch.full((3,), GRAY), atol=1e-6)
    # A face pixel (label 13) keeps its original colour, even inside the gray neck square.
    face_y, face_x = 180, 225                                                             # source pixels
    assert person.parse[face_y, face_x] == 13
    fy, fx = int((face_y + 0.5) * 1.5 - 0.5 + 128), int((face_x + 0.5) * 1.5 - 0.5)
    original = torch.from_numpy(inputs_frame_image(person)[fy, fx].astype(np.float32)) / 255 * 2 - 1
    torch.testing.assert_close(img[:, fy, fx], original, atol=1e-6, rtol=0)


def inputs_frame_image(person: PersonData) -> np.ndarray:
    from PIL import Image

    frame = Letterbox.fit(person.image.shape[:2], (1024, 768))
    return frame.apply(person.image, Image.Resampling.BILINEAR, (255, 255, 255))


def test_parse_agnostic_clears_arms_along_the_chain_only() -> None:
    parse = np.full((1024, 768), 15, dtype=np.uint8)        # everything "right arm"
    pts = np.zeros((25, 2))
    pts[2], pts[3], pts[4], pts[5] = (250, 300), (100, 500), (220, 700), (520, 300)
    out = parse_agnostic(parse, pts)
    for idx in (2, 3):                                       # circles of radius 150 at shoulder and elbow
        x, y = pts[idx]
        assert out[int(y) + 140, int(x)] == 0
    assert out[700 + 38, 220] == 0 and out[700 + 60, 220] == 15   # radius 40 at the wrist
    assert out[1000, 700] == 15                                   # far from the chain: kept
    # A missing elbow skips its segments; the chain then runs shoulder -> wrist directly.
    pts[3] = (0, 0)
    out = parse_agnostic(parse, pts)
    assert out[500, 100] == 15 and out[500, 235] == 0


def test_missing_hips_and_neck_are_completed_missing_shoulder_is_refused() -> None:
    pts = np.zeros((25, 2))
    pts[2], pts[5] = (300, 300), (500, 300)
    done, notes = complete_keypoints(pts)
    np.testing.assert_allclose(done[1], (400, 300))
    np.testing.assert_allclose(done[9], (300, 300 + 1.3 * 200))
    np.testing.assert_allclose(done[12], (500, 300 + 1.3 * 200))
    assert len(notes) == 3
    pts[5] = (0, 0)
    with pytest.raises(KeypointsMissing, match=r"keypoint 5 \(left shoulder\) is missing") as info:
        complete_keypoints(pts)
    # The VITON service maps viton.errors classes to reply codes.
    assert isinstance(info.value, PoseIncomplete) and info.value.code == "no_pose"


def test_input_errors_carry_the_service_codes() -> None:
    err = InputError("x")
    assert isinstance(err, InvalidInput) and isinstance(err, VitonHDError) and err.code == "bad_input"


def test_bad_inputs_raise_typed_errors(person: PersonData, garment: GarmentData) -> None:
    bad_parse = person.parse.copy()
    bad_parse[0, 0] = 42
    with pytest.raises(InputError, match=r"labels \[42\] outside CIHP"):
        make_inputs(dataclasses.replace(person, parse=bad_parse), garment)
    with pytest.raises(InputError, match="person.image must be an"):
        make_inputs(dataclasses.replace(person, image=person.image.astype(np.float32)), garment)
    with pytest.raises(InputError, match="person.keypoints"):
        make_inputs(dataclasses.replace(person, keypoints=person.keypoints[:18]), garment)
    with pytest.raises(InputError, match="garment.mask has no cloth"):
        make_inputs(person, dataclasses.replace(garment, mask=np.zeros_like(garment.mask)))


def test_native_resolution_is_not_resampled(person: PersonData, garment: GarmentData) -> None:
    from PIL import Image

    big = np.asarray(Image.fromarray(person.image).resize((768, 1024)))
    parse = np.asarray(Image.fromarray(person.parse).resize((768, 1024), Image.Resampling.NEAREST))
    kp = person.keypoints.copy()
    kp[:, 0] *= 768 / person.image.shape[1]
    kp[:, 1] *= 1024 / person.image.shape[0]
    pose = render_skeleton(kp, (1024, 768))  # drawn at the native size by the adapter itself
    native = PersonData(image=big, parse=parse, keypoints=kp)
    out = make_inputs(native, garment)
    assert out.frame.box == (0, 0, 1024, 768)
    torch.testing.assert_close(out.pose[0].permute(1, 2, 0), torch.from_numpy(pose.copy()).float() / 255 * 2 - 1)
