"""Fixtures of the fault / hostile-input suite: ONE real LOCAL deployment shared by this package

The deployment is started by `start_application.sh` (the supervisor, mirror.launch) on free
loopback ports and warmed up with one try-on whose preprocessing ran on the remote (gvirtus)
device, so every test starts from "everything healthy". Tests that break a component wait for
it to come back before they end (the next test may rely on it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gvirtus.testing import BackendProcess
from node1.cli.http_client import ApiError, ApiUnreachable, WebClient
from tests.faults.deployment import START_TIMEOUT_S, Deployment, astronaut_jpeg

WARMUP_TIMEOUT_S = 180.0     # first remote preprocessing registers the models on the backend
REQUEST_TIMEOUT_S = 60       # limits.request_timeout_s of the test deployment (warm-up is slow here)


class _Background:
    """Starts and warms the deployment on a thread, so the suite's other tests run meanwhile."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.dep: Deployment | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="deployment-start", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.dep = Deployment.start(self.tmp, limits={"request_timeout_s": REQUEST_TIMEOUT_S})
            client = web_client(self.dep)
            garment = client.garments()[0]["id"]
            deadline = time.monotonic() + WARMUP_TIMEOUT_S
            while True:
                try:
                    if client.tryon(astronaut_jpeg(), garment)["device"].startswith("gvirtus:"):
                        return
                except (ApiError, ApiUnreachable):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"deployment never served a remote try-on:\n{self.dep.tail()}")
        except BaseException as exc:  # handed to the test that needs the deployment
            self.error = exc


@pytest.fixture(scope="package")
def _deployment_starting(request: pytest.FixtureRequest,
                         tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Background | None]:
    """Begins with the first test of this folder when any selected test needs the deployment."""
    needed = any("deployment" in getattr(item, "fixturenames", ()) for item in request.session.items)
    bg = _Background(tmp_path_factory.mktemp("deployment")) if needed else None
    yield bg
    if bg is not None:
        bg.thread.join()
        if bg.dep is not None:
            bg.dep.stop()


@pytest.fixture(autouse=True)
def _start_early(_deployment_starting: _Background | None) -> None:
    """Autouse: touching the session fixture starts the deployment at the suite's first test."""


@pytest.fixture(scope="package")
def deployment(_deployment_starting: _Background | None) -> Deployment:
    bg = _deployment_starting
    if bg is None:
        raise RuntimeError("deployment fixture used but not collected as needed")
    bg.thread.join(START_TIMEOUT_S + WARMUP_TIMEOUT_S)
    if bg.error is not None:
        raise bg.error
    if bg.dep is None:
        raise RuntimeError("the deployment did not start in time")
    return bg.dep


def web_client(dep: Deployment, timeout_s: float = 120.0) -> WebClient:
    cert = Path(dep.cfg["paths"]["var_dir"]) / "tls" / "node1.crt"
    return WebClient(dep.url, cafile=str(cert), timeout_s=timeout_s)


@pytest.fixture(scope="package")
def client(deployment: Deployment) -> WebClient:
    return web_client(deployment)


@pytest.fixture(scope="package")
def garment_id(client: WebClient) -> str:
    return client.garments()[0]["id"]


@pytest.fixture(scope="package")
def photo() -> bytes:
    return astronaut_jpeg()


@pytest.fixture(scope="package")
def gvirtus_backend() -> Iterator[BackendProcess]:
    """A standalone gvirtus backend (its own process) with a small quota, for hostile-input tests."""
    with BackendProcess(quota_mb=64, session_timeout_s=5.0) as backend:
        yield backend
