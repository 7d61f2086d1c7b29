"""mirror.memory: the allocator settings apply on glibc, and the opt-out leaves glibc's defaults."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = "from mirror.memory import keep_freed_memory; print(keep_freed_memory())"


def _run(env_extra: dict[str, str]) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env_extra}  # a child: the settings are process-wide
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True,
                          timeout=60).stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's; this libc has none")
def test_thresholds_apply_on_glibc() -> None:
    assert _run({"VM_GLIBC_DEFAULTS": "0"}) == "True"


def test_opt_out_keeps_the_defaults() -> None:
    assert _run({"VM_GLIBC_DEFAULTS": "1"}) == "False"
