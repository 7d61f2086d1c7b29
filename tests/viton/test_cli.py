"""`python -m node1.cli tryon`: the in-process path needs node 1 preprocessing and a garment
source (node1.tryon.preprocess, garments catalog/preparation) and skips until they exist."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from node1.cli.main import main


def test_without_a_running_deployment_the_api_path_says_so(tmp_path: Path, astronaut: np.ndarray,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from testing.deployment import write_config

    monkeypatch.setenv("VM_CONFIG", str(write_config(tmp_path / "cfg")))  # free ports: nothing listens
    photo = tmp_path / "p.png"
    Image.fromarray(astronaut).save(photo)
    code = main(["tryon", "--photo", str(photo), "--garment", "g", "--out", str(tmp_path / "o.png")])
    assert code == 1
    err = capsys.readouterr().err
    assert "is not reachable" in err and "--in-process" in err


def test_unreadable_photo_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "p.png"
    bad.write_bytes(b"not an image")
    code = main(["tryon", "--photo", str(bad), "--garment", "g", "--out", str(tmp_path / "o.png"), "--in-process"])
    assert code == 2
    assert "cannot read image" in capsys.readouterr().err


def test_in_process_tryon_of_the_astronaut(tmp_path: Path, astronaut: np.ndarray) -> None:
    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(photo)
    garment = tmp_path / "garment.png"
    from viton_synth import make_garment
    Image.fromarray(make_garment().image).save(garment)
    out = tmp_path / "out.png"
    assert main(["tryon", "--photo", str(photo), "--garment", str(garment), "--out", str(out), "--in-process"]) == 0
    result = np.asarray(Image.open(out))
    assert result.shape == astronaut.shape and not np.array_equal(result, astronaut)
