"""The long load and fault runs, opt-in (`pytest tests/faults --run-slow`): their bounds as tests.

Each runs its benchmark as a subprocess with --json (its own deployment) and checks what the
issue promises: zero lost requests, memory/fd bounds held, typed errors only, recovery.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.faults.deployment import ROOT

RUN_TIMEOUT_S = 1500
MIN_SUCCESS_RATE = 0.99       # nothing is broken during the plain load run: at least 99 % succeed


def _bench(script: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args, "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.stdout.strip(), f"{script} printed nothing; stderr:\n{proc.stderr[-3000:]}"
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_load_run_loses_nothing_and_holds_its_bounds() -> None:
    r = _bench("load_bench.py", "--shoppers", "4", "--minutes", "1")
    assert r["lost"] == 0 and r["requests"] > 0, r
    assert r["ok"] / r["requests"] >= MIN_SUCCESS_RATE, (r["success_rate"], r["errors_by_kind"])
    assert r["bounds_held"], r["processes"]
    assert set(r["errors_by_kind"]) <= {"node2_unavailable", "busy", "timeout"}, r["errors_by_kind"]


@pytest.mark.slow
@pytest.mark.needs_root
def test_faults_under_load_recover_and_lose_nothing() -> None:
    if os.geteuid() != 0:
        pytest.skip(f"part B puts node 2 in a network namespace: needs root (euid {os.geteuid()})")
    r = _bench("fault_bench.py", "--shoppers", "4", "--phase-s", "20")
    assert r["lost_total"] == 0
    for comp, row in r["kills"].items():
        assert row["recovery_s"] is not None and row["recovery_s"] < 90, (comp, row)
        assert set(row["errors_by_kind"]) <= {"node2_unavailable"}, (comp, row)
    assert r["kills"]["gvirtus.backend"]["first_ok_local_fallback_s"] is not None
    assert r["links"]["cut 8 s"]["recovery_after_restore_s"] is not None
