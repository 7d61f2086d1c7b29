"""The page survives a web worker's death: real headless Chromium, two real gunicorn workers on Redis.

The shopper snaps (fake webcam playing the astronaut), picks a garment and clicks "Try it on"; while
the try-on runs (TEST DOUBLE pipeline, STAGE_DELAY_S per stage) the test kills the worker running it
with SIGKILL. The page learns it (its event stream breaks, or reports `worker_lost`), re-sends the
try-on with the same Idempotency-Key, and shows the result: one lost job, one done job, one key.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from testing.deployment import children
from tests.web.server import Server, start_server
from tests.web.test_browser import CHROMEDRIVER, CHROMIUM, _wait, make_driver, write_y4m

STAGE_DELAY_S = 0.8
CATCH_TIMEOUT_S = 30.0
PREFIX = "bw-"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt install chromium chromium-driver)")


@pytest.fixture
def server(tmp_path: Path, demo_catalog_dir: Path, redis_socket: str) -> Iterator[Server]:
    srv = start_server(tmp_path, env_extra={"VM_TEST_PIPELINE_DELAY_S": str(STAGE_DELAY_S), "VM_TEST_CATALOG": "demo"},
                       paths={"catalog_dir": str(demo_catalog_dir)},
                       node1={"store": "redis", "web_processes": 2,
                              "redis": {"unix_socket": redis_socket, "key_prefix": PREFIX}})
    deadline = time.monotonic() + 30
    while len(children(srv.proc.pid)) < 2:
        assert time.monotonic() < deadline, srv.log()
        time.sleep(0.1)
    yield srv
    srv.stop()


def _jobs(r: redis.Redis) -> list[dict]:
    return [json.loads(r.get(k) or "{}") for k in r.scan_iter(match=f"{PREFIX}job:*")]


def test_page_resends_after_its_worker_is_killed(server: Server, redis_socket: str, astronaut: np.ndarray) -> None:
    from selenium.webdriver.common.by import By

    r = redis.Redis(unix_socket_path=redis_socket)
    workers = children(server.proc.pid)
    with tempfile.TemporaryDirectory() as tmp:
        y4m = Path(tmp) / "astronaut.y4m"
        write_y4m(y4m, astronaut)
        driver = make_driver(y4m, Path(tmp) / "profile", 1280, 1000)
        try:
            driver.get(server.base + "/")
            snap = driver.find_element(By.ID, "snap")
            _wait(driver, lambda d: snap.is_enabled(), "the camera preview")
            snap.click()
            _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".garment"), "the garment catalog")
            driver.find_elements(By.CSS_SELECTOR, ".garment")[1].click()
            driver.find_element(By.ID, "tryon").click()
            deadline = time.monotonic() + CATCH_TIMEOUT_S
            while not (running := [j for j in _jobs(r) if j.get("state") == "running"]):
                assert time.monotonic() < deadline, "the try-on never ran"
                time.sleep(0.02)
            victim = int(running[0]["owner"].split(":")[1])
            assert victim in workers
            os.kill(victim, signal.SIGKILL)
            _wait(driver, lambda d: d.execute_script("return document.body.dataset.result") == "shown", "the result")
            assert driver.execute_script("return document.body.dataset.resent") == "1"
            assert driver.find_element(By.ID, "message").get_attribute("hidden") is not None
            after = driver.find_element(By.ID, "after")
            _wait(driver, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth",
                                                     after), "the result image to load")
        finally:
            driver.quit()
    jobs = _jobs(r)
    assert sorted(j["state"] for j in jobs) == ["done", "failed"], jobs
    assert next(j for j in jobs if j["state"] == "failed")["error"]["code"] == "worker_lost"
    keys = list(r.scan_iter(match=f"{PREFIX}idem:*"))
    done = next(j for j in jobs if j["state"] == "done")
    assert len(keys) == 1 and r.get(keys[0]).decode() == done["id"]     # one key: the page re-sent the same one
