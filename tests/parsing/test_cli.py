"""`python -m node1.cli parse` / `prepare-dataset`, preprocess(), palette PNGs and input errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from node1.parsing import InvalidParsingInput, load_parse_png, parse_person, save_parse_png
from node1.parsing import labels as L
from tests.parsing.conftest import Case, photo

ROOT = Path(__file__).resolve().parents[2]


def test_palette_png_round_trip(tmp_path: Path, cases: dict[str, Case]) -> None:
    parse = cases["astronaut"].parse
    save_parse_png(parse, tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as img:
        assert img.mode == "P"
        assert img.getpalette()[3 * L.FACE:3 * L.FACE + 3] == list(L.PALETTE[L.FACE])
    assert np.array_equal(load_parse_png(tmp_path / "p.png"), parse)
    with pytest.raises(InvalidParsingInput, match="label 20"):
        save_parse_png(np.full((4, 4), 20, np.uint8), tmp_path / "bad.png")


def test_bad_inputs_are_named(cases: dict[str, Case]) -> None:
    c = cases["astronaut"]
    with pytest.raises(InvalidParsingInput, match=r"landmarks must be \(33, 4\)"):
        parse_person(c.image, c.landmarks[:25], c.mask)
    with pytest.raises(InvalidParsingInput, match="mask must be"):
        parse_person(c.image, c.landmarks, c.mask[:100])
    with pytest.raises(InvalidParsingInput, match="image must be"):
        parse_person(c.image.astype(np.float32), c.landmarks, c.mask)
    bad = c.landmarks.copy()
    bad[3, 0] = np.nan
    with pytest.raises(InvalidParsingInput, match="NaN"):
        parse_person(c.image, bad, c.mask)
    with pytest.raises(InvalidParsingInput, match="torch device or a gvirtus RemoteDevice"):
        parse_person(c.image, c.landmarks, c.mask, device=object())


def test_preprocess_local() -> None:
    from node1.tryon.preprocess import preprocess

    img = photo("astronaut")
    stages: list[tuple[str, float]] = []
    pre = preprocess(img, "cpu", on_stage=lambda name, ms: stages.append((name, ms)))
    h, w = img.shape[:2]
    assert pre.device == "cpu"
    assert pre.parse.shape == (h, w) and pre.parse.dtype == np.uint8
    assert pre.person_mask.shape == (h, w) and pre.person_mask.dtype == np.uint8
    assert pre.person_mask.max() == 255 and 0 < (pre.person_mask >= 128).mean() < 1
    assert not hasattr(pre, "pose_image")      # drawn on node 2 from the keypoints by the engine that reads it
    assert pre.body25.shape == (25, 3) and pre.body25.dtype == np.float32
    assert len(pre.pose_json["people"][0]["pose_keypoints_2d"]) == 75
    assert {"pose", "parse", "total", "pose.detector", "pose.landmark"} <= set(pre.timings_ms)
    assert [name for name, _ in stages] == ["pose", "parsing"] and all(ms > 0 for _, ms in stages)
    assert [ms for _, ms in stages] == [pre.timings_ms["pose"], pre.timings_ms["parse"]]
    assert L.FACE in pre.parse and L.UPPER_CLOTHES in pre.parse


def test_load_models_loads_the_parsing_module_preprocess_runs() -> None:
    """node1.tryon.runner.load_models (the web app's start) loads the parsing module the try-ons then use,
    not a second copy: it once called the cached loader without arguments, a different cache key."""
    from node1.parsing import runner as parsing_runner
    from node1.tryon.runner import load_models

    for cpu_fast, cache in ((False, parsing_runner.cpu_module), (True, parsing_runner.cpu_fast_module)):
        cache.cache_clear()
        load_models(cpu_fast)
        assert cache.cache_info().currsize == 1
        parsing_runner.parsing_module(cpu_fast)       # what preprocess's MaskAndParse asks for
        assert cache.cache_info().currsize == 1 and cache.cache_info().hits >= 1


def test_without_the_mask_preprocess_brings_back_the_rest_and_the_message_names_what_is_missing() -> None:
    """with_mask=False (the try-on runners' call: no engine reads the mask) gives the same parse map and
    keypoints; a try-on message for an engine that did read the mask is then refused, naming it."""
    from node1.tryon.errors import TryOnFailed
    from node1.tryon.preprocess import preprocess
    from node1.tryon.runner import person_tensors
    from viton.contract import ENGINE_READS

    img = photo("astronaut")
    full, lean = preprocess(img, "cpu"), preprocess(img, "cpu", with_mask=False)
    assert full.person_mask is not None and lean.person_mask is None
    np.testing.assert_array_equal(lean.parse, full.parse)
    np.testing.assert_array_equal(lean.body25, full.body25)
    assert sorted(person_tensors(lean, ENGINE_READS["geometric"])) == ["keypoints", "parse", "person"]
    with pytest.raises(TryOnFailed, match="person_mask"):
        person_tensors(lean, (*ENGINE_READS["geometric"], "person_mask"))
    assert person_tensors(full, ("person_mask",))["person_mask"].dtype == np.uint8


@pytest.mark.parametrize("name", ["astronaut", "camera_flipped"])
def test_preprocess_gives_what_estimate_pose_then_parse_person_give(name: str) -> None:
    """One device program (the mask and the parse in the last launch) computes exactly what the two public
    steps compute one after the other."""
    from node1.pose import estimate_pose
    from node1.tryon.preprocess import preprocess

    img = photo(name)
    pre = preprocess(img, "cpu")
    pose = estimate_pose(img, "cpu")
    parsed = parse_person(img, pose.landmarks, pose.mask, "cpu")
    np.testing.assert_array_equal(pre.parse, parsed.parse)
    np.testing.assert_array_equal(pre.person_mask, pose.mask)
    np.testing.assert_array_equal(pre.landmarks, pose.landmarks)
    np.testing.assert_array_equal(pre.body25, pose.body25)
    assert pre.num_people == pose.num_people


def test_cli_parse_writes_label_png(tmp_path: Path) -> None:
    Image.fromarray(photo("camera")).save(tmp_path / "camera.png")
    out = tmp_path / "camera_parse.png"
    run = subprocess.run([sys.executable, "-m", "node1.cli", "parse", str(tmp_path / "camera.png"), "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    parse = load_parse_png(out)
    assert parse.shape == (512, 512) and L.FACE in parse
    (tmp_path / "junk.jpg").write_bytes(b"not a jpeg")
    run = subprocess.run([sys.executable, "-m", "node1.cli", "parse", str(tmp_path / "junk.jpg"), "--out",
                          str(tmp_path / "x.png")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "not a readable image" in run.stderr


def test_cli_prepare_dataset_writes_vitonhd_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from garments.demo import write_demo_catalog
    from node1.cli.main import main

    photos, garments, out = tmp_path / "photos", tmp_path / "garments", tmp_path / "out"
    photos.mkdir()
    garments.mkdir()
    Image.fromarray(photo("astronaut")).save(photos / "astro.jpg")
    Image.fromarray(np.full((300, 200, 3), 200, np.uint8)).save(photos / "empty_wall.png")   # nobody there
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (photos / "notes.txt").write_text("not a photo")
    demo = tmp_path / "demo"
    write_demo_catalog(demo)
    for src in sorted(demo.glob("*.png"))[:2]:
        shutil.copy(src, garments / src.name)
    (garments / "torn.png").write_bytes(b"\x89PNG broken")

    assert main(["prepare-dataset", "--photos", str(photos), "--garments", str(garments), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for skipped in ("empty_wall.png", "broken.jpg", "notes.txt", "torn.png"):
        assert skipped in printed, f"{skipped} not reported as skipped"
    assert (out / "image" / "astro.jpg").is_file()
    with Image.open(out / "image" / "astro.jpg") as img:
        assert img.size == (768, 1024)
    parse = load_parse_png(out / "image-parse" / "astro.png")
    assert parse.shape == (1024, 768) and L.FACE in parse
    with Image.open(out / "openpose-img" / "astro_rendered.png") as img:
        assert img.size == (768, 1024) and img.mode == "RGB"
    kp = json.loads((out / "openpose-json" / "astro_keypoints.json").read_text())
    assert len(kp["people"][0]["pose_keypoints_2d"]) == 75
    cloths = sorted(p.name for p in (out / "cloth").iterdir())
    assert len(cloths) == 2 and sorted(p.name for p in (out / "cloth-mask").iterdir()) == cloths
    with Image.open(out / "cloth-mask" / cloths[0]) as m:
        assert m.size == (768, 1024) and m.mode == "L"
    pairs = (out / "test_pairs.txt").read_text().split("\n")
    assert pairs[:-1] == [f"astro.jpg {c}" for c in cloths] and pairs[-1] == ""


def test_cli_prepare_dataset_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from node1.cli.main import main

    (tmp_path / "p").mkdir()
    (tmp_path / "g").mkdir()
    code = main(["prepare-dataset", "--photos", str(tmp_path / "p"), "--garments", str(tmp_path / "g"),
                 "--out", str(tmp_path / "o")])
    assert code == 2 and "holds no files" in capsys.readouterr().err
