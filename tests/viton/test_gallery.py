"""`python -m viton.gallery`: a contact sheet from a people folder (prepare-dataset layout, written
from real preprocessing) and the demo catalog; bad folders are typed errors naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from photo_variants import demo_garments, write_people
from PIL import Image

from viton import GeometricEngine
from viton.gallery import GalleryInputError, contact_sheet, load_catalog, load_people, main


@pytest.fixture(scope="module")
def people_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("people")
    assert write_people(str(out), [("astronaut", "original"), ("camera", "flip")]) == [
        "00_astronaut_original", "01_camera_flip"]
    return out


def test_sheet_holds_each_photo_and_its_try_ons(people_dir: Path, tmp_path: Path, repo_root: Path) -> None:
    catalog = repo_root / "var" / "catalog" / "demo"
    if not (catalog / "manifest.json").is_file():
        pytest.skip(f"no demo catalog at {catalog} (scripts/bootstrap.sh writes it)")
    out = tmp_path / "sheet.png"
    assert main(["--people", str(people_dir), "--catalog", str(catalog), "--garments", "tshirt-red,tshirt-breton",
                 "--cell", "128", "--out", str(out)]) == 0
    sheet = np.asarray(Image.open(out).convert("RGB"))
    band = 22
    assert sheet.shape == (3 * (128 + band), 3 * 128, 3)  # header row + 2 people; photo + 2 garments
    # the cell of the astronaut in the red tee is what the engine makes of the files' inputs
    (name, person), = [x for x in load_people(people_dir) if x[0].startswith("00")]
    garments = load_catalog(catalog, ["tshirt-red"])
    direct = contact_sheet([(name, person)], garments, GeometricEngine(), cell=128)
    row = slice(128 + band, 2 * (128 + band))
    assert np.array_equal(sheet[row, :2 * 128], direct[128 + band:, :2 * 128])
    assert not np.array_equal(sheet[row, 128:256], sheet[row, :128])  # the try-on is not the photo


def test_sheet_from_in_memory_garments(people_dir: Path) -> None:
    people = load_people(people_dir)
    sheet = contact_sheet(people, list(demo_garments()[:2]), cell=64)
    assert sheet.shape == (3 * (64 + 22), 3 * 64, 3) and sheet.dtype == np.uint8


def test_bad_folders_are_typed_errors(tmp_path: Path, people_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(GalleryInputError, match="no .png/.jpg photo"):
        load_people(tmp_path)
    (tmp_path / "image").mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "image" / "p.png")
    with pytest.raises(GalleryInputError, match=r"p\.png: missing"):
        load_people(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"garments": [{"slug": "a"}]}))
    with pytest.raises(GalleryInputError, match="no garment zz; it has a"):
        load_catalog(tmp_path, ["zz"])
    assert main(["--people", str(people_dir), "--catalog", str(tmp_path), "--out", str(tmp_path / "o.png")]) == 2
    assert "manifest.json" in capsys.readouterr().err
