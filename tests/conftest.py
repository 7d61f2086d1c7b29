"""Shared fixtures. Tests mirror the source tree: tests/<package>/test_*.py."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests share 2 cores with each other's servers: keep torch from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "2")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run long (load/soak) tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow test: opt in with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """torch at 1 thread for the test (as gvirtus.testing backends run), restored afterwards: CPU
    convolutions then sum in the same order on both sides, so results compare bit for bit."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """(512, 512, 3) uint8 RGB: a real photo of a person (scikit-image)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def camera_rgb() -> np.ndarray:
    """(512, 512, 3) uint8 RGB: scikit-image's cameraman photo, grey copied to 3 channels."""
    from skimage import data

    g = data.camera()
    return np.ascontiguousarray(np.stack([g, g, g], axis=-1))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
