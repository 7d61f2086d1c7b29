"""Fixtures for the garments tests: one demo catalog written per session (about 2 s)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from garments.demo import MANIFEST_NAME, write_demo_catalog


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("catalog") / "demo"
    write_demo_catalog(out)
    return out


def _items(demo_dir: Path, categories: tuple[str, ...]) -> list[dict]:
    items = [it for it in json.loads((demo_dir / MANIFEST_NAME).read_text())["garments"]
             if it["category"] in categories]
    for it in items:
        it["rgb"] = np.ascontiguousarray(cv2.imread(str(demo_dir / it["image"]))[..., ::-1])
        it["truth"] = cv2.imread(str(demo_dir / it["mask"]), cv2.IMREAD_GRAYSCALE)
    return items


@pytest.fixture(scope="session")
def demo_items(demo_dir: Path) -> list[dict]:
    """The demo tops' manifest entries, each with 'rgb' (H, W, 3) uint8 and 'truth' (H, W) uint8
    silhouette added."""
    return _items(demo_dir, ("top",))


@pytest.fixture(scope="session")
def lower_items(demo_dir: Path) -> list[dict]:
    """The demo bottoms' and dresses' manifest entries, with 'rgb' and 'truth' as demo_items."""
    return _items(demo_dir, ("bottom", "dress"))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a >= 128, b >= 128
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="session")
def iou():
    """iou(mask_a, mask_b) -> intersection over union of two 0/255 masks."""
    return mask_iou
