"""Fixtures for the VITON-HD engine tests.

The networks are big (ALIAS ~100 M parameters, ~25 s per 1024x768 forward on 2 idle CPU cores), so
they are built once per session and the whole pipeline runs once; stage tests read its intermediates.

Torch runs these tests with VITONHD_TEST_THREADS threads (default 1). On the shared 2-core machine,
2 OpenMP threads spin-waited against other processes: the full pipeline took 128 s wall / 27 s user
with 2 threads vs 80 s / 18 s with 1 (load average ~10). The previous setting is restored afterwards.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tests.vitonhd.scene import astronaut_person, tshirt_garment
from viton.engine import GarmentData, PersonData, TryOnOutput
from viton.vitonhd import InferenceResult, VitonHDEngine, build_networks

MANIFEST = Path(__file__).resolve().parents[1] / "data" / "vitonhd_state_dicts.json"
TEST_THREADS = int(os.environ.get("VITONHD_TEST_THREADS", "1"))


@contextlib.contextmanager
def torch_threads(n: int = TEST_THREADS) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="module")
def _vitonhd_threads() -> Iterator[None]:
    with torch_threads():
        yield


@pytest.fixture(scope="session")
def manifest() -> dict[str, Any]:
    """The official checkpoints' keys/shapes/dtypes (copied from ../shared/reference into the repo)."""
    return json.loads(MANIFEST.read_text())


@pytest.fixture(scope="session")
def nets() -> dict[str, nn.Module]:
    """The three networks with random weights (official init), CPU, eval mode. Do not modify."""
    torch.manual_seed(1234)
    with torch_threads():
        return build_networks()


@pytest.fixture(scope="session")
def person(astronaut: np.ndarray) -> PersonData:
    return astronaut_person(astronaut)


@pytest.fixture(scope="session")
def garment() -> GarmentData:
    from skimage import data

    return tshirt_garment(np.ascontiguousarray(data.coffee()))


@pytest.fixture(scope="session")
def engine(nets: dict[str, nn.Module]) -> VitonHDEngine:
    return VitonHDEngine(nets, "cpu", seed=7)


@pytest.fixture(scope="session")
def full_run(engine: VitonHDEngine, person: PersonData, garment: GarmentData) -> tuple[TryOnOutput, InferenceResult]:
    """One whole try-on of the astronaut at 1024 x 768 with random weights on CPU."""
    with torch_threads():
        return engine.try_on_detailed(person, garment)
