"""A real browser on the shopper's page: headless Chromium (Debian's chromium + chromedriver via
Selenium) with a fake webcam playing a real photo (skimage astronaut, as .y4m), against the real
server (`python -m node1.web`, gunicorn over TLS) with the real garment catalog (demo garments) and
the web-layer TEST DOUBLE pipeline.

Screenshots go to test-artifacts/ (git-ignored): web_desktop.png, web_phone.png, web_camera_denied.png.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from garments.demo import DEMO_DESIGNS
from mirror.config import ROOT
from tests.web.server import Server, start_server

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT_S = 90          # the real pipeline on a busy 2-core machine can take tens of seconds
FAKE_CAMERA_FRAMES = 10

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt install chromium chromium-driver)")


def write_y4m(path: Path, rgb: np.ndarray, frames: int = FAKE_CAMERA_FRAMES) -> None:
    """A YUV4MPEG2 file (4:2:0, full-range JPEG YCbCr) showing `rgb`: (H, W, 3) uint8, H and W even."""
    h, w = rgb.shape[:2]
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b

    def sub(p: np.ndarray) -> np.ndarray:
        return p.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    planes = [np.clip(np.rint(p), 0, 255).astype(np.uint8).tobytes() for p in (y, sub(cb), sub(cr))]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            out.write(b"FRAME\n")
            for p in planes:
                out.write(p)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_catalog_dir: Path) -> Iterator[Server]:
    # The real garment catalog (demo garments); 0.15 s per stage so progress is really streamed.
    srv = start_server(tmp_path_factory.mktemp("web-browser"),
                       env_extra={"VM_TEST_PIPELINE_DELAY_S": "0.15", "VM_TEST_CATALOG": "demo"},
                       paths={"catalog_dir": str(demo_catalog_dir)})
    yield srv
    srv.stop()


def make_driver(y4m: Path | None, profile: Path, width: int, height: int):  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--ignore-certificate-errors",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(flag)
    if y4m is not None:
        opts.add_argument("--use-fake-ui-for-media-stream")
        opts.add_argument("--use-fake-device-for-media-stream")
        opts.add_argument(f"--use-file-for-fake-video-capture={y4m}")
    else:
        opts.add_argument("--use-fake-device-for-media-stream")
        opts.add_argument("--deny-permission-prompts")
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def _wait(driver, cond, what: str):  # type: ignore[no-untyped-def]
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(cond, message=f"timed out waiting for {what}")


def _try_on_and_wait(driver) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By

    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".garment"), "the garment catalog")
    garments = driver.find_elements(By.CSS_SELECTOR, ".garment")
    assert len(garments) == len(DEMO_DESIGNS)
    groups = [g.text.strip().lower() for g in driver.find_elements(By.CSS_SELECTOR, ".garments .group")]
    assert groups == ["tops", "bottoms", "dresses"], groups   # the catalog grouped by category
    _wait(driver, lambda d: all(d.execute_script(
        "return [...document.querySelectorAll('.garment img')].map(i => i.complete && i.naturalWidth > 0)")),
        "every garment thumbnail to load")
    garments[1].click()
    assert garments[1].get_attribute("aria-checked") == "true"
    driver.find_element(By.ID, "tryon").click()
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.result") == "shown", "the result")
    after = driver.find_element(By.ID, "after")
    _wait(driver, lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", after),
          "the result image to load")
    assert after.is_displayed() and driver.find_element(By.ID, "before").is_displayed()
    stages = driver.execute_script(
        "return [...document.querySelectorAll('#progress li')].map(li => li.dataset.stage + ':' + li.className)")
    assert stages == ["pose:done", "parsing:done", "transfer:done", "tryon:done"]
    href = driver.find_element(By.ID, "download").get_attribute("href")
    assert href.endswith(after.get_attribute("src").split("/")[-1] + "?download=1")
    assert driver.find_element(By.ID, "message").get_attribute("hidden") is not None


def test_snap_pick_try_on_with_fake_webcam(server: Server, astronaut: np.ndarray):
    from selenium.webdriver.common.by import By

    ARTIFACTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        y4m = Path(tmp) / "astronaut.y4m"
        write_y4m(y4m, astronaut)
        driver = make_driver(y4m, Path(tmp) / "profile", 1280, 1000)
        try:
            driver.get(server.base + "/")
            assert driver.title == "Virtual Mirror"
            snap = driver.find_element(By.ID, "snap")
            _wait(driver, lambda d: snap.is_enabled(), "the camera preview")
            size = driver.execute_script(
                "const v = document.getElementById('camera'); return [v.videoWidth, v.videoHeight]")
            assert size == [512, 512]
            # The fake camera really shows the photo: 8x8 block luminance of the preview ~ the astronaut's.
            blocks = driver.execute_script("""
                const v = document.getElementById('camera'), c = document.createElement('canvas');
                c.width = v.videoWidth; c.height = v.videoHeight;
                const g = c.getContext('2d'); g.drawImage(v, 0, 0);
                const d = g.getImageData(0, 0, c.width, c.height).data, n = 8, out = new Array(n * n).fill(0);
                for (let y = 0; y < c.height; y++) for (let x = 0; x < c.width; x++) {
                  const i = 4 * (y * c.width + x);
                  out[Math.floor(y * n / c.height) * n + Math.floor(x * n / c.width)] +=
                    0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
                }
                return out.map(s => s / (c.width * c.height / (n * n)));""")
            lum = astronaut.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
            expected = lum.reshape(8, 64, 8, 64).mean(axis=(1, 3)).ravel()
            assert np.corrcoef(blocks, expected)[0, 1] > 0.98, blocks
            assert np.abs(np.array(blocks) - expected).mean() < 10
            snap.click()
            _wait(driver, lambda d: d.find_element(By.ID, "photo-preview").is_displayed(), "the snapped photo")
            _try_on_and_wait(driver)
            driver.set_window_size(1280, 1560)          # the whole page in one desktop screenshot
            driver.execute_script("window.scrollTo(0, 0)")
            driver.save_screenshot(str(ARTIFACTS / "web_desktop.png"))
            driver.set_window_size(390, 844)
            driver.execute_script("window.scrollTo(0, 0)")
            width = driver.execute_script("return document.documentElement.scrollWidth")
            assert width <= 390, "the page scrolls sideways on a phone-sized screen"
            driver.save_screenshot(str(ARTIFACTS / "web_phone.png"))
            driver.execute_script("document.getElementById('result-card').scrollIntoView()")
            driver.save_screenshot(str(ARTIFACTS / "web_phone_result.png"))
        finally:
            driver.quit()


def test_camera_denied_message_then_upload_works(server: Server, astronaut_jpeg: bytes):
    from selenium.webdriver.common.by import By

    ARTIFACTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "astronaut.jpg"
        photo.write_bytes(astronaut_jpeg)
        driver = make_driver(None, Path(tmp) / "profile", 1280, 1000)
        try:
            driver.get(server.base + "/")
            msg = driver.find_element(By.ID, "frame-empty")
            _wait(driver, lambda d: msg.get_attribute("data-code") == "camera_denied", "the camera-denied message")
            assert "Camera permission was denied" in msg.text and "upload a photo" in msg.text
            assert not driver.find_element(By.ID, "snap").is_enabled()
            driver.save_screenshot(str(ARTIFACTS / "web_camera_denied.png"))
            driver.find_element(By.ID, "upload").send_keys(str(photo))
            _wait(driver, lambda d: d.find_element(By.ID, "photo-preview").is_displayed(), "the uploaded photo")
            _try_on_and_wait(driver)
        finally:
            driver.quit()


@pytest.mark.slow
def test_real_local_pipeline_in_the_browser(tmp_path: Path, demo_catalog_dir: Path, astronaut: np.ndarray):
    """Opt-in (--run-slow): the page with REAL components in process (node1.tryon.in_process)."""
    from selenium.webdriver.common.by import By

    srv = start_server(tmp_path, env_extra={"VM_RUNNER_FACTORY": "node1.tryon.in_process:build_in_process"},
                       paths={"catalog_dir": str(demo_catalog_dir)}, limits={"request_timeout_s": 300})
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        y4m = tmp_path / "astronaut.y4m"
        write_y4m(y4m, astronaut)
        driver = make_driver(y4m, tmp_path / "profile", 1280, 1000)
        try:
            driver.get(srv.base + "/")
            snap = driver.find_element(By.ID, "snap")
            _wait(driver, lambda d: snap.is_enabled(), "the camera preview")
            snap.click()
            _wait(driver, lambda d: d.find_element(By.ID, "photo-preview").is_displayed(), "the snapped photo")
            _try_on_and_wait(driver)
            driver.set_window_size(1280, 1560)
            driver.execute_script("window.scrollTo(0, 0)")
            driver.save_screenshot(str(ARTIFACTS / "web_desktop_local_pipeline.png"))
        finally:
            driver.quit()
    finally:
        srv.stop()
