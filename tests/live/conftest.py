"""Fixtures of the live-mirror tests: ONE real LOCAL deployment (start_application.sh: gvirtus backend,
VITON service, gateway, node 1's gunicorn over HTTPS) for every test here, with at most one live
session and a short idle timeout, and the 640x480 real-photo sequence (the astronaut, swaying)."""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from mirror.config import ROOT
from testing.deployment import LocalDeployment
from testing.live_client import photo_sequence

ARTIFACTS = ROOT / "test-artifacts"
IDLE_TIMEOUT_S = 4.0
SEQUENCE_FRAMES = 60


@pytest.fixture(scope="session")
def live_deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    overrides = {"live": {"max_sessions": 1, "idle_timeout_s": IDLE_TIMEOUT_S},
                 "limits": {"rate_limit_per_min": 100000}}
    with LocalDeployment(tmp_path_factory.mktemp("live"), overrides=overrides) as dep:
        try:
            yield dep
        finally:  # what the deployment said, for a failure's post-mortem (git-ignored)
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "live_deployment.log").write_text(dep.log())


def get(dep: LocalDeployment, path: str) -> bytes:
    ctx = ssl.create_default_context(cafile=dep.cafile)
    with urllib.request.urlopen(dep.url + path.lstrip("/"), context=ctx, timeout=60) as resp:  # noqa: S310
        return bytes(resp.read())


def garment_ids(dep: LocalDeployment) -> dict[str, str]:
    """name -> id of the deployment's demo garments."""
    return {g["name"]: g["id"] for g in json.loads(get(dep, "/api/garments"))["garments"]}


def metric(dep: LocalDeployment, name: str) -> float:
    """The value of an unlabelled metric (or the sum over its labels) on /metrics."""
    total = 0.0
    for line in get(dep, "/metrics").decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="session")
def sequence(astronaut: np.ndarray) -> list[np.ndarray]:
    return photo_sequence(astronaut, SEQUENCE_FRAMES)
