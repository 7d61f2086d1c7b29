"""prepare-dataset's two VITON-HD interop defects (issue 19): the person is found on the photo as given
and moved into the padded 768x1024 canvas (the camera man, 512x512, was skipped as "no person" once
padded), and a photo without the hips VITON-HD's loader divides by is written with a warning in the
printed report, in OUT/report.json and in --json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from node1.cli.dataset import into_canvas, vitonhd_warning
from node1.parsing import load_parse_png


def _photo(name: str) -> np.ndarray:
    from skimage import data

    if name == "camera":
        g = data.camera()
        return np.ascontiguousarray(np.stack([g, g, g], axis=-1))
    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    from garments.demo import write_demo_catalog
    from node1.cli.main import main

    root = tmp_path_factory.mktemp("dataset")
    photos, garments, out = root / "photos", root / "garments", root / "out"
    photos.mkdir()
    garments.mkdir()
    for name in ("camera", "astronaut"):
        Image.fromarray(_photo(name)).save(photos / f"{name}.png")
    demo = root / "demo"
    write_demo_catalog(demo)
    (garments / "tee.png").write_bytes((demo / "tshirt-red.png").read_bytes())
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["prepare-dataset", "--photos", str(photos), "--garments", str(garments), "--out", str(out)]) == 0
    return out, buf.getvalue()


def test_the_camera_man_is_found_and_moved_into_the_canvas(export: tuple[Path, str]) -> None:
    from node1.tryon.preprocess import preprocess

    out, printed = export
    assert (out / "image" / "camera.jpg").is_file(), printed
    with Image.open(out / "image" / "camera.jpg") as img:
        assert img.size == (768, 1024)
    kp = np.array(json.loads((out / "openpose-json" / "camera_keypoints.json").read_text())["people"][0]
                  ["pose_keypoints_2d"], np.float32).reshape(25, 3)
    # the photo as given (512 -> 768 square), its keypoints shifted down by the canvas's top padding
    import cv2

    scaled = cv2.resize(_photo("camera"), (768, 768), interpolation=cv2.INTER_CUBIC)
    direct = np.asarray(preprocess(scaled, device="cpu").body25, np.float32)
    seen = direct[:, 2] > 0
    assert seen[[2, 5, 9, 12]].all()
    np.testing.assert_allclose(kp[seen, :2], direct[seen, :2] + np.array([0.0, 128.0]), atol=1e-3)
    assert (kp[~seen] == 0).all()
    parse = load_parse_png(out / "image-parse" / "camera.png")
    assert parse.shape == (1024, 768) and not parse[:128].any() and not parse[-128:].any()
    assert (parse[128:-128] == 13).any()   # the face, inside the photo's rows


def test_hips_out_of_view_are_warned_in_the_report_and_the_json(export: tuple[Path, str]) -> None:
    out, printed = export
    assert (out / "image" / "astronaut.jpg").is_file()   # written, with a warning
    assert "warning astronaut.jpg" in printed and "RHip, LHip" in printed
    report = json.loads((out / "report.json").read_text())
    assert set(report["warnings"]) == {"astronaut.jpg"}, report["warnings"]
    assert "divides by the shoulder and hip distances" in report["warnings"]["astronaut.jpg"]
    assert sorted(report["people"]) == ["astronaut.jpg", "camera.jpg"] and report["pairs"] == 2


def test_the_loaders_division_is_what_the_warning_is_about(export: tuple[Path, str]) -> None:
    """VITON-HD's get_img_agnostic: pose[9] = mid + (pose[9] - mid) / |pose[12] - pose[9]| * |pose[5] - pose[2]|."""
    out, _ = export
    for name, warned in (("camera", False), ("astronaut", True)):
        kp = np.array(json.loads((out / "openpose-json" / f"{name}_keypoints.json").read_text())["people"][0]
                      ["pose_keypoints_2d"], np.float64).reshape(25, 3)[:, :2]
        length_a, length_b = np.linalg.norm(kp[5] - kp[2]), np.linalg.norm(kp[12] - kp[9])
        mid = (kp[9] + kp[12]) / 2
        with np.errstate(invalid="ignore", divide="ignore"):
            moved = mid + (kp[9] - mid) / length_b * length_a
        assert np.isfinite(moved).all() != warned, name
        assert (vitonhd_warning(np.concatenate([kp, np.ones((25, 1)) * (kp.any(1, keepdims=True))], 1))
                is not None) == warned


def test_into_canvas_pads_background_and_shifts_found_points_only() -> None:
    parse = np.full((100, 50), 5, np.uint8)
    kp = np.zeros((25, 3), np.float32)
    kp[2] = (10.0, 20.0, 0.9)
    canvas, moved = into_canvas(parse, kp, (80, 120))
    assert canvas.shape == (120, 80) and canvas[10:110, 15:65].min() == 5 and canvas.sum() == 5 * parse.size
    assert tuple(moved[2]) == (25.0, 30.0, pytest.approx(0.9)) and (moved[3] == 0).all()
