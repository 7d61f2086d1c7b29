"""TEST DOUBLES for testing node 1's WEB LAYER IN ISOLATION — not a try-on implementation.

`TorsoTintTestRunner` stands in for the real pipeline (pose -> parsing -> transfer -> VITON)
only so the HTTP API, SSE progress, errors, limits and the page can be tested without the other
components; it tints a fixed torso box of the photo with the garment's colour, deterministically,
so tests can check "torso changed, face did not". The end-to-end tests with the real pipeline
are the integrator's (issue 9, tests a/b with start_application.sh).

`build_for_tests(cfg)` is a pipeline factory for `VM_RUNNER_FACTORY=tests.web.doubles:build_for_tests`;
it reads VM_TEST_PIPELINE_DELAY_S (seconds per stage) so the page's progress can be watched, and
VM_TEST_CATALOG=demo to serve the real garment catalog (node1.tryon.catalog) instead of the test one.
"""

from __future__ import annotations

import io
import os
import threading
import time

import numpy as np
from PIL import Image

from mirror import Config
from node1.tryon import (
    STAGES,
    BadGarment,
    GarmentInfo,
    Node2Unavailable,
    RunnerHealth,
    TryOnError,
    TryOnResult,
    UnknownGarment,
)
from node1.web.uploads import decode_upload

# Torso box as fractions of (H, W): rows 55%..95%, cols 22%..78% (below the astronaut's face).
TORSO_ROWS = (0.55, 0.95)
TORSO_COLS = (0.22, 0.78)
TINT_ALPHA = 0.7


def torso_box(h: int, w: int) -> tuple[slice, slice]:
    return (slice(int(h * TORSO_ROWS[0]), int(h * TORSO_ROWS[1])),
            slice(int(w * TORSO_COLS[0]), int(w * TORSO_COLS[1])))


class InMemoryTestCatalog:
    """TEST DOUBLE garment catalog: flat-colour T-shirt shapes drawn with numpy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[str, tuple[GarmentInfo, tuple[int, int, int], bytes]] = {}
        for gid, name, colour in (("test-red-tee", "Red tee", (200, 40, 50)),
                                  ("test-teal-tee", "Teal tee", (30, 140, 140)),
                                  ("test-yellow-tee", "Yellow tee", (235, 190, 40))):
            self._put(gid, name, colour)

    @staticmethod
    def _thumb(colour: tuple[int, int, int]) -> bytes:
        h, w = 160, 120
        img = np.full((h, w, 3), 245, np.uint8)
        img[40:150, 30:90] = colour          # body
        img[40:75, 8:30] = colour            # sleeves
        img[40:75, 90:112] = colour
        img[40:52, 50:70] = 245              # neckline
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        return buf.getvalue()

    def _put(self, gid: str, name: str, colour: tuple[int, int, int], category: str = "top") -> GarmentInfo:
        info = GarmentInfo(gid, name, category)
        with self._lock:
            self._items[gid] = (info, colour, self._thumb(colour))
        return info

    def colour(self, garment_id: str) -> tuple[int, int, int]:
        with self._lock:
            if garment_id not in self._items:
                raise UnknownGarment(f"no garment {garment_id!r}")
            return self._items[garment_id][1]

    def list(self) -> list[GarmentInfo]:
        with self._lock:
            return [v[0] for v in self._items.values()]

    def get(self, garment_id: str) -> GarmentInfo:
        with self._lock:
            if garment_id not in self._items:
                raise UnknownGarment(f"no garment {garment_id!r}")
            return self._items[garment_id][0]

    def thumbnail(self, garment_id: str) -> tuple[bytes, str]:
        with self._lock:
            if garment_id not in self._items:
                raise UnknownGarment(f"no garment {garment_id!r}")
            return self._items[garment_id][2], "image/png"

    def add(self, data: bytes, name: str, category: str = "top") -> GarmentInfo:
        image = decode_upload(data, 10 * 1024 * 1024, 4096)
        if image.std() < 1.0:
            raise BadGarment("the garment image is a flat colour; photograph the garment on a plain background")
        colour = tuple(int(c) for c in image.reshape(-1, 3).mean(axis=0))
        return self._put(f"test-{len(self._items)}", name, colour, category)  # type: ignore[arg-type]


def garment_colour(catalog: object, garment_id: str) -> tuple[int, int, int]:
    """The garment's colour: from the test catalog, or the mean cloth colour of a real catalog garment."""
    if isinstance(catalog, InMemoryTestCatalog):
        return catalog.colour(garment_id)
    g = catalog.garment(garment_id)  # type: ignore[attr-defined]
    r, gr, b = g.image[g.mask >= 128].reshape(-1, 3).mean(axis=0)
    return int(r), int(gr), int(b)


class TorsoTintTestRunner:
    """TEST DOUBLE runner (web layer only): tints the torso box with the garment colour.

    Args:
        catalog: where garment colours come from (InMemoryTestCatalog or node1.tryon.catalog.WebCatalog).
        delay_s: sleep per stage (to watch progress).
        fail_with: raise this error instead of producing a result.
    """

    def __init__(self, catalog: object, delay_s: float = 0.0,
                 fail_with: BaseException | None = None) -> None:
        self.catalog = catalog
        self.delay_s = delay_s
        self.fail_with = fail_with
        self.calls = 0
        self.last_source: bytes | None = None
        self.node2_status = "ok"     # what node 2's health document would say

    def run(self, photo: np.ndarray, garment_id: str, progress, *,  # type: ignore[no-untyped-def]
            source: bytes | None = None) -> TryOnResult:
        self.calls += 1
        self.last_source = source
        timings: dict[str, float] = {}
        for stage in STAGES:
            t0 = time.perf_counter()
            if self.delay_s:
                time.sleep(self.delay_s)
            if self.fail_with is not None and stage == "pose":
                raise self.fail_with
            timings[stage] = (time.perf_counter() - t0) * 1000.0
            progress(stage, timings[stage])
        out = photo.copy()
        rows, cols = torso_box(*photo.shape[:2])
        colour = np.array(garment_colour(self.catalog, garment_id), np.float32)
        out[rows, cols] = (TINT_ALPHA * colour + (1 - TINT_ALPHA) * out[rows, cols]).astype(np.uint8)
        return TryOnResult(image=out, timings_ms=timings, device="cpu (web test double)",
                              transport="none (web test double)", transport_bytes=1000)

    def health(self) -> RunnerHealth:
        down = isinstance(self.fail_with, TryOnError) and self.fail_with.code == "node2_unavailable"
        return RunnerHealth(models_loaded=["web-test-double"], transport="none (web test double)",
                              node2_reachable=not down, node2_status=self.node2_status)


def build_for_tests(cfg: Config) -> tuple[TorsoTintTestRunner, object]:
    """VM_TEST_CATALOG=demo: the real catalog (node1.tryon.catalog over paths.catalog_dir), else the test one."""
    catalog: object
    if os.environ.get("VM_TEST_CATALOG") == "demo":
        from node1.tryon.catalog import open_catalog

        catalog = open_catalog(cfg, generate_demo=False)
    else:
        catalog = InMemoryTestCatalog()
    delay = float(os.environ.get("VM_TEST_PIPELINE_DELAY_S", "0") or 0)
    # VM_TEST_FAIL=node2_unavailable: every try-on fails as if node 2 were down (503)
    fail = {"node2_unavailable": Node2Unavailable()}.get(os.environ.get("VM_TEST_FAIL", ""))
    return TorsoTintTestRunner(catalog, delay_s=delay, fail_with=fail), catalog
