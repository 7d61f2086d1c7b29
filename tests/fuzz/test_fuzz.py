"""Fuzzing the decoders that read network bytes, with atheris (libFuzzer, coverage-guided).

Targets (tests/fuzz/targets.py): the transport frame decoder, the gvirtus request decoders, the
upload decoder. Each must accept an input or refuse it with its package's typed error: no other
exception, no hang (libFuzzer -timeout), no runaway memory (-rss_limit_mb).

Default run: every target for FUZZ_SECONDS (VM_FUZZ_SECONDS, default 3 s) from the corpus in
tests/fuzz/corpus/<target>/, and the corpus replayed in-process. Longer: `--run-slow` runs each
target for VM_FUZZ_LONG_SECONDS (default 300 s). What a run discovers goes to a scratch folder,
never into the repository; a failing input is printed (hex) so it can be added to
tests/fuzz/make_corpus.py as a regression seed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CORPUS = HERE / "corpus"
FUZZ_SECONDS = int(os.environ.get("VM_FUZZ_SECONDS", "3"))
LONG_FUZZ_SECONDS = int(os.environ.get("VM_FUZZ_LONG_SECONDS", "300"))
INPUT_TIMEOUT_S = 10          # one input taking longer is a hang (libFuzzer -timeout)
RSS_LIMIT_MB = 3072
MAX_INPUT_BYTES = 70_000      # frame headers are capped at 64 KiB: a little more than that
STARTUP_ALLOWANCE_S = 120     # importing torch and the instrumented modules on a loaded machine


def _fuzz(target: str, seconds: int, scratch: Path) -> None:
    found = scratch / "found"
    found.mkdir()
    artifacts = scratch / "artifacts"
    artifacts.mkdir()
    cmd = [sys.executable, str(HERE / "run_atheris.py"), target, f"-max_total_time={seconds}",
           f"-timeout={INPUT_TIMEOUT_S}", f"-rss_limit_mb={RSS_LIMIT_MB}", f"-max_len={MAX_INPUT_BYTES}",
           f"-artifact_prefix={artifacts}/", "-print_final_stats=1", str(found), str(CORPUS / target)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          timeout=seconds + STARTUP_ALLOWANCE_S)
    bad = sorted(artifacts.iterdir())
    report = "\n".join(f"{p.name}: {p.read_bytes()[:4096].hex()}" for p in bad)
    assert proc.returncode == 0 and not bad, (
        f"fuzzing {target} failed (exit {proc.returncode}); failing inputs (hex, add them to "
        f"tests/fuzz/make_corpus.py):\n{report}\n--- output tail ---\n{proc.stderr[-6000:]}")
    assert "Done " in proc.stderr, f"atheris did not run to its time budget:\n{proc.stderr[-3000:]}"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_corpus_replays_with_typed_errors_only(target: str) -> None:
    """Every seed (valid inputs and the hostile ones found so far) through the decoder, in-process."""
    seeds = sorted((CORPUS / target).iterdir())
    assert len(seeds) >= 10, f"the {target} corpus is missing: run tests/fuzz/make_corpus.py"
    for seed in seeds:
        TARGETS[target](seed.read_bytes())


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_atheris_finds_nothing(target: str, tmp_path: Path) -> None:
    _fuzz(target, FUZZ_SECONDS, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_atheris_finds_nothing_long(target: str, tmp_path: Path) -> None:
    _fuzz(target, LONG_FUZZ_SECONDS, tmp_path)
