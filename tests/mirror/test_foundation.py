"""Foundation facts: CI calls the README's test command, pins agree, model files verify, log format."""

from __future__ import annotations

import io
import logging
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mirror import ModelFileError, request_context, setup_logging
from mirror.models import load_manifest, verify
from tests.mirror.helpers import ROOT


def _readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- test-command -->\s*```(?:sh|bash)?\n(.+?)\n```", text, re.S)
    assert m, "README.md must mark its test command with <!-- test-command -->"
    return m.group(1).strip()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    command = _readme_test_command()
    ci_lines = [x.strip() for x in (ROOT / ".ci" / "run").read_text().splitlines()
                if x.strip() and not x.strip().startswith("#")]
    assert ci_lines[-1] == command, f".ci/run ends with {ci_lines[-1]!r}, README says {command!r}"


def test_readme_start_command_exists_and_is_executable() -> None:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- start-command -->\s*```(?:sh|bash)?\n(.+?)\n```", text, re.S)
    assert m and m.group(1).strip() == "./start_application.sh"
    for script in ("start_application.sh", "run_tests.sh", ".ci/run", "scripts/bootstrap.sh"):
        assert (ROOT / script).stat().st_mode & 0o111, f"{script} is not executable"


def _pins(path: Path) -> dict[str, str]:
    out = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#")[0].strip()
        if "==" in line:
            name, ver = line.split("==")
            out[name.lower().replace("_", "-")] = ver
    return out


def test_pyproject_requirements_and_lock_agree() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {}
    for spec in project["dependencies"] + project["optional-dependencies"]["dev"]:
        name, ver = spec.split("==")
        declared[name.lower().replace("_", "-")] = ver
    reqs = _pins(ROOT / "requirements" / "runtime.txt") | _pins(ROOT / "requirements" / "dev.txt")
    lock = _pins(ROOT / "requirements" / "lock.txt")
    assert declared == reqs
    assert declared["torch"] == "2.13.0"
    for name, ver in declared.items():
        assert lock.get(name) == ver, f"{name}: pyproject {ver}, lock {lock.get(name)}"
    assert "mediapipe" not in lock


def test_model_files_verified(tmp_path: Path) -> None:
    manifest = load_manifest()["files"]
    assert set(manifest) >= {"pose_detection.tflite", "pose_landmark_full.tflite",
                             "selfie_segmentation.tflite", "face_detection_short_range.tflite"}
    for name in manifest:
        verify(name)  # the bootstrap fetched them
    with pytest.raises(ModelFileError, match=r"pose_detection.tflite is missing"):
        verify("pose_detection.tflite", tmp_path)
    shutil.copy(ROOT / "models" / "pose_detection.tflite", tmp_path / "pose_detection.tflite")
    with open(tmp_path / "pose_detection.tflite", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    with pytest.raises(ModelFileError, match=r"pose_detection.tflite is corrupt: sha256 [0-9a-f]{64} != pinned"):
        verify("pose_detection.tflite", tmp_path)
    with pytest.raises(ModelFileError, match="unknown model 'nope.tflite'"):
        verify("nope.tflite", tmp_path)


def test_fetch_models_is_idempotent() -> None:
    done = subprocess.run([sys.executable, "scripts/fetch_models.py"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0
    assert "fetched" not in done.stderr  # everything already present and valid: nothing downloaded


def test_log_format_has_time_node_component_request(capsys: pytest.CaptureFixture[str]) -> None:
    log = setup_logging("gvirtus.backend", node="node2")
    try:
        with request_context("req-42"):
            log.info("hello")
        log.info("outside")
    finally:
        logging.getLogger().handlers.clear()
    err = capsys.readouterr().err.splitlines()
    stamp = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z node2 gvirtus\.backend "
    assert re.match(stamp + r"req=req-42 INFO hello$", err[0]), err[0]
    assert re.match(stamp + r"req=- INFO outside$", err[1]), err[1]


def test_log_records_go_to_the_current_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler set up on a stream that is later closed (pytest's capture of an earlier test) must not fail."""
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    log = setup_logging("node1.pose", node="node1")
    try:
        first.close()
        monkeypatch.setattr(sys, "stderr", second)
        log.error("written later, from elsewhere")
    finally:
        logging.getLogger().handlers.clear()
    assert "ERROR written later, from elsewhere" in second.getvalue()


def test_packages_have_public_faces() -> None:
    for pkg in ("mirror", "gvirtus", "transport", "node1", "node2", "viton", "garments"):
        init = ROOT / pkg / "__init__.py"
        assert init.is_file() and '"""' in init.read_text(), f"{pkg}/__init__.py needs a docstring"
