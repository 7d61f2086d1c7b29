"""End to end against the REAL LOCAL deployment started by start_application.sh: gvirtus backend,
VITON service, node 2 gateway and node 1's gunicorn over HTTPS, all real, with the demo catalog.

(a) the API dresses the astronaut: torso changed, face unchanged;
(b) a real headless Chromium with a fake webcam playing the astronaut photo snaps, picks a garment
    and shows the result (screenshot in test-artifacts/e2e_browser.png);
(c) bad uploads get 4xx JSON errors and the deployment keeps serving.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from node1.cli.http_client import ApiError, WebClient
from testing.deployment import LocalDeployment
from tests.web.test_browser import ARTIFACTS, CHROMEDRIVER, CHROMIUM, _try_on_and_wait, make_driver, write_y4m
from tests.web.test_uploads import png_header_claiming

REQUEST_TIMEOUT_S = 240  # real preprocessing on a busy 2-core machine


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    overrides = {"limits": {"rate_limit_per_min": 100000, "request_timeout_s": REQUEST_TIMEOUT_S}}
    with LocalDeployment(tmp_path_factory.mktemp("e2e"), overrides=overrides) as dep:
        yield dep


@pytest.fixture(scope="module")
def client(deployment: LocalDeployment) -> WebClient:
    return WebClient(deployment.url, cafile=deployment.cafile, timeout_s=REQUEST_TIMEOUT_S + 30)


def _jpeg(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def test_api_dresses_the_astronaut(client: WebClient, astronaut: np.ndarray) -> None:
    garments = client.garments()
    assert len(garments) >= 8
    red = next(g for g in garments if "red" in g["name"].lower())
    out = client.tryon(_jpeg(astronaut), red["id"])
    assert set(out) >= {"id", "result_url", "timings_ms", "device", "transport"}
    assert set(out["timings_ms"]) >= {"pose", "parsing", "transfer", "tryon"}
    assert out["transport"] == "tcp"  # no RDMA device here: auto fell back to TCP
    assert "gvirtus" in out["device"] or "fallback" in out["device"]
    result = np.asarray(Image.open(io.BytesIO(client.result(out["result_url"]))).convert("RGB"), np.float32)
    assert result.shape == astronaut.shape
    src = astronaut.astype(np.float32)
    # The astronaut's face (eyes-mouth box) and the background corner are unchanged (JPEG noise only);
    # her chest (suit) is now the red garment.
    face = (slice(90, 170), slice(190, 260))
    chest = (slice(300, 400), slice(150, 300))
    assert np.abs(result[face] - src[face]).mean() < 6.0
    assert np.abs(result[chest] - src[chest]).mean() > 25.0
    chest_rgb = result[chest].reshape(-1, 3).mean(axis=0)
    assert chest_rgb[0] > chest_rgb[1] + 40 and chest_rgb[0] > chest_rgb[2] + 40, chest_rgb


def test_health_reports_the_deployment(client: WebClient) -> None:
    health = client.health()
    assert health["status"] in {"ok", "degraded"}
    assert health["transport"] == "tcp"
    assert health["node2_reachable"] is True


@pytest.mark.parametrize(("body", "garment", "status", "code"), [
    (b"this is not an image", "demo", 415, "unsupported_image_type"),
    (b"", "demo", 400, "empty_upload"),
    ("truncated", "demo", 400, "corrupt_image"),
    (png_header_claiming(20000, 20000), "demo", 422, "decompression_bomb"),
    ("photo", "no-such-garment", 422, "unknown_garment"),
])
def test_bad_uploads_are_refused_and_service_keeps_serving(client: WebClient, astronaut: np.ndarray, body: object,
                                                           garment: str, status: int, code: str) -> None:
    gid = client.garments()[0]["id"] if garment == "demo" else garment
    data = _jpeg(astronaut)
    payload = {"truncated": data[: len(data) // 3], "photo": data}.get(body, body) if isinstance(body, str) else body
    assert isinstance(payload, bytes)
    with pytest.raises(ApiError) as err:
        client.tryon(payload, gid)
    assert (err.value.status, err.value.code) == (status, code)
    assert err.value.message
    assert client.health()["status"] in {"ok", "degraded"}


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="needs Debian's chromium and chromium-driver")
def test_browser_snap_and_try_on(deployment: LocalDeployment, astronaut: np.ndarray) -> None:
    from selenium.webdriver.common.by import By

    ARTIFACTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        y4m = Path(tmp) / "astronaut.y4m"
        write_y4m(y4m, astronaut)
        driver = make_driver(y4m, Path(tmp) / "profile", 1280, 1000)
        try:
            driver.get(deployment.url)
            snap = driver.find_element(By.ID, "snap")
            from selenium.webdriver.support.ui import WebDriverWait

            WebDriverWait(driver, 60).until(lambda d: snap.is_enabled(), "the camera preview")
            snap.click()
            _try_on_and_wait(driver)
            driver.set_window_size(1280, 1560)
            driver.execute_script("window.scrollTo(0, 0)")
            driver.save_screenshot(str(ARTIFACTS / "e2e_browser.png"))
            shown = driver.execute_script(
                "const a = document.getElementById('after'); return [a.naturalWidth, a.naturalHeight]")
            assert shown == [512, 512]
        finally:
            driver.quit()


def test_cli_tryon_through_the_deployment(deployment: LocalDeployment, client: WebClient, astronaut: np.ndarray,
                                          tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    photo = tmp_path / "me.jpg"
    photo.write_bytes(_jpeg(astronaut))
    out = tmp_path / "dressed.jpg"
    gid = client.garments()[0]["id"]
    env = dict(os.environ, VM_CONFIG=str(deployment.config_path))
    cmd = [sys.executable, "-m", "node1.cli", "tryon", "--photo", str(photo), "--garment", gid, "--out", str(out)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=REQUEST_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert "transport tcp" in done.stdout
    assert Image.open(out).size == (512, 512)
    bad = subprocess.run(cmd[:-4] + ["--garment", "nope", "--out", str(out)], env=env, capture_output=True,
                         text=True, timeout=REQUEST_TIMEOUT_S)
    assert bad.returncode == 2 and "unknown_garment" in bad.stderr


def test_node2_health_and_both_nodes_metrics(deployment: LocalDeployment, client: WebClient) -> None:
    import json
    import urllib.request

    port = deployment.config["node2"]["health_port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as r:  # noqa: S310 (loopback)
        health = json.loads(r.read())
    assert health["status"] == "ok"
    assert health["viton"]["reachable"] is True
    assert health["gvirtus"]["reachable"] is True and health["gvirtus"]["sessions"] >= 1
    assert health["gpu"]["name"] and health["gpu"]["memory_total_mb"] > 0  # the CPU device here
    assert health["channels"][0]["backend"] == "tcp"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:  # noqa: S310
        node2_metrics = r.read().decode()
    assert "transport_bytes_total" in node2_metrics
    status, _, body = client.request("GET", "/metrics")
    assert status == 200
    text = body.decode()
    for name in ("tryon_requests_total", "tryon_duration_seconds", "tryon_errors_total", "gvirtus_calls_total",
                 "transport_bytes_total"):
        assert name in text, name
    assert 'tryon_requests_total{outcome="ok"}' in text
