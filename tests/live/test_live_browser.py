"""A real browser in Live mode: headless Chromium (Selenium) with a fake webcam playing the swaying
astronaut (.y4m, 640x480) opens the page over HTTPS against the real LOCAL deployment, starts Live,
receives the dressed video (getStats framesDecoded grows), sees the red tee on the torso and the face
unchanged in a frame sampled through a canvas, switches to the navy tee, stops (live_sessions back to 0).

Screenshot: test-artifacts/live_browser.png (git-ignored).
"""

from __future__ import annotations

import base64
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from testing.deployment import LocalDeployment
from tests.live.conftest import garment_ids, metric
from tests.web.test_browser import ARTIFACTS, CHROMEDRIVER, CHROMIUM, make_driver

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (apt install chromium chromium-driver)")

WAIT_S = 300          # the first live frames register the models on node 2 (busy 2-core machine)
FACE = (slice(95, 150), slice(270, 320))
CHEST = (slice(290, 370), slice(240, 340))
SWITCH_LAG_FRAMES = 15   # the browser's jitter buffer and the poll interval, not the server's frame path


def write_y4m_frames(path: Path, frames: list[np.ndarray], fps: int = 10) -> None:
    """A YUV4MPEG2 file (4:2:0, full-range JPEG YCbCr) playing `frames`: each (H, W, 3) uint8, H and W even."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            f = rgb.astype(np.float32)
            r, g, b = f[..., 0], f[..., 1], f[..., 2]
            planes = [0.299 * r + 0.587 * g + 0.114 * b, 128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
                      128 + 0.5 * r - 0.418688 * g - 0.081312 * b]
            out.write(b"FRAME\n")
            for i, plane in enumerate(planes):
                sub = plane.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)) if i else plane
                out.write(np.clip(np.rint(sub), 0, 255).astype(np.uint8).tobytes())


def _wait(driver, cond, what: str):  # type: ignore[no-untyped-def]
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(cond, message=f"timed out waiting for {what}")


def _decoded(driver) -> int:  # type: ignore[no-untyped-def]
    return int(driver.execute_script("return Number(document.body.dataset.framesDecoded || 0)"))


def _sample(driver) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The live video's current frame, read through a canvas: (480, 640, 3) float32 RGB."""
    url = driver.execute_script("""
        const v = document.getElementById('live-video'), c = document.createElement('canvas');
        c.width = v.videoWidth; c.height = v.videoHeight;
        c.getContext('2d').drawImage(v, 0, 0);
        return c.toDataURL('image/png');""")
    img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")
    return np.asarray(img, np.float32)


def _face_error(got: np.ndarray, sequence: list[np.ndarray]) -> float:
    """Mean |difference| over the face against the closest source frame (the browser loops the file)."""
    return min(float(np.abs(got[FACE] - s[FACE].astype(np.float32)).mean()) for s in sequence)


def _chest(got: np.ndarray) -> np.ndarray:
    return got[CHEST].reshape(-1, 3).mean(axis=0)


def _navy(rgb: tuple[float, float, float] | np.ndarray) -> bool:
    r, g, b = (float(v) for v in rgb)
    return not (r > g + 40 and r > b + 40) and b >= r


def test_live_mode_in_a_real_browser(live_deployment: LocalDeployment, sequence: list[np.ndarray]) -> None:
    from selenium.webdriver.common.by import By

    ids = garment_ids(live_deployment)
    red = next(i for n, i in ids.items() if "red" in n.lower())
    navy = next(i for n, i in ids.items() if "navy" in n.lower())
    ARTIFACTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        y4m = Path(tmp) / "astronaut.y4m"
        write_y4m_frames(y4m, sequence)
        driver = make_driver(y4m, Path(tmp) / "profile", 1280, 1100)
        try:
            driver.get(live_deployment.url)
            _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'.garment[data-id="{red}"]'), "the catalog")
            driver.find_element(By.CSS_SELECTOR, f'.garment[data-id="{red}"]').click()
            driver.find_element(By.ID, "live-start").click()
            _wait(driver, lambda d: d.execute_script("return document.body.dataset.live") in ("streaming", "failed"),
                  "the live connection")
            assert driver.execute_script("return document.body.dataset.live") == "streaming"
            assert metric(live_deployment, "live_sessions") == 1
            _wait(driver, lambda d: _decoded(d) >= 3, "the first dressed frames")
            first = _decoded(driver)
            _wait(driver, lambda d: _decoded(d) >= first + 3, "more frames (framesDecoded grows)")
            got = _sample(driver)
            assert got.shape == (480, 640, 3)
            assert _face_error(got, sequence) < 12.0                  # the face is the camera's own
            r, g, b = _chest(got)
            assert r > g + 40 and r > b + 40, (r, g, b)                # the red tee on the torso
            assert driver.execute_script(
                "return getComputedStyle(document.getElementById('live-video')).transform").startswith("matrix(-1")
            assert "fps" in driver.find_element(By.ID, "live-stats").text
            driver.save_screenshot(str(ARTIFACTS / "live_browser.png"))

            driver.find_element(By.CSS_SELECTOR, f'.garment[data-id="{navy}"]').click()
            _wait(driver, lambda d: d.execute_script("return document.body.dataset.liveGarment") == navy,
                  "the switch to be acknowledged")
            switched = _decoded(driver)   # the server acknowledges when the first navy frame goes out
            _wait(driver, lambda d: _navy(_chest(_sample(d))), "a navy frame on screen")
            lag = _decoded(driver) - switched
            assert lag <= SWITCH_LAG_FRAMES, f"{lag} frames were decoded after the acknowledgment before navy"
            r, g, b = _chest(_sample(driver))
            assert _navy((r, g, b)), (r, g, b)                                    # and it stays navy
            assert driver.execute_script("return document.body.dataset.live") == "streaming"

            driver.find_element(By.ID, "live-stop").click()
            deadline = time.monotonic() + 10
            while metric(live_deployment, "live_sessions") != 0:
                assert time.monotonic() < deadline, "stopping did not end the session on the server"
                time.sleep(0.2)
            assert driver.execute_script("return document.body.dataset.live") == "stopped"
        finally:
            driver.quit()


def test_live_falls_back_to_the_still_mode_without_a_camera(live_deployment: LocalDeployment) -> None:
    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory() as tmp:
        driver = make_driver(None, Path(tmp) / "profile", 1280, 1000)   # camera permission denied
        try:
            driver.get(live_deployment.url)
            _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, ".garment"), "the catalog")
            before = metric(live_deployment, "live_sessions")   # 0 unless an earlier test left one closing
            driver.find_element(By.ID, "live-start").click()
            _wait(driver, lambda d: d.execute_script("return document.body.dataset.live") == "failed", "the fallback")
            msg = driver.find_element(By.ID, "live-message")
            assert msg.is_displayed() and "Upload photo" in msg.text
            assert msg.get_attribute("data-code") == "no_camera"
            assert driver.find_element(By.ID, "upload").get_attribute("type") == "file"
            assert metric(live_deployment, "live_sessions") <= before   # no session was opened
        finally:
            driver.quit()
