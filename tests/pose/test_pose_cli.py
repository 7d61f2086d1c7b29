"""`python -m node1.cli pose`: JSON + render (a real subprocess), exit code 2 with the message on stderr
when nobody is in the photo or it cannot be read (in-process, through node1.cli.main)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "node1.cli", "pose", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"})


def test_pose_cli_writes_json_and_render(tmp_path: Path, astronaut: np.ndarray, repo_root: Path) -> None:
    photo = tmp_path / "p.png"
    Image.fromarray(astronaut).save(photo)
    out, render = tmp_path / "kp.json", tmp_path / "pose.png"
    proc = _cli(str(photo), "--out", str(out), "--render", str(render), cwd=repo_root)
    assert proc.returncode == 0, proc.stderr
    assert "served by cpu" in proc.stderr
    kp = json.loads(out.read_text())["people"][0]["pose_keypoints_2d"]
    assert len(kp) == 75 and kp[2] > 0.9  # nose found, confident
    img = np.asarray(Image.open(render))
    assert img.shape == (512, 512, 3) and img.max() > 0


def _in_process(*argv: str) -> int:
    from node1.cli.main import main

    return main(["pose", *argv])


def test_pose_cli_no_person_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = tmp_path / "empty.png"
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(photo)
    assert _in_process(str(photo), "--out", str(tmp_path / "kp.json")) == 2
    assert "no person detected — step into the frame" in capsys.readouterr().err
    assert not (tmp_path / "kp.json").exists()


def test_pose_cli_unreadable_photo_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = tmp_path / "bad.png"
    photo.write_bytes(b"not an image")
    assert _in_process(str(photo), "--out", str(tmp_path / "kp.json")) == 2
    assert "cannot read photo" in capsys.readouterr().err
