"""Catalog: demo garments, drop folder validation (good and bad files), the prepared cache, ids, thumbnails."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from garments import (
    DropLimits,
    GarmentFileRejected,
    GarmentNotFound,
    decode_garment_file,
    load_catalog,
    prepare_garment,
)
from garments.demo import DEMO_DESIGNS, render_garment, write_demo_catalog
from garments.prepare import PREPARE_CALLS
from garments.types import content_id


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (the pixel data is absent): a decompression-bomb probe."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def encode(rgb: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture
def catalog_dir(tmp_path: Path, demo_dir: Path) -> Path:
    out = tmp_path / "catalog"
    shutil.copytree(demo_dir, out / "demo")
    return out


@pytest.fixture(scope="session")
def drop_files(demo_items) -> dict[str, bytes]:
    """The drop folder's files (encoded once per session): 3 good photos, 8 bad files, 2 to be ignored."""
    by_slug = {it["slug"]: it for it in demo_items}

    def small(slug: str) -> np.ndarray:
        return np.asarray(Image.fromarray(by_slug[slug]["rgb"]).resize((384, 512), Image.Resampling.LANCZOS))

    hoodie = by_slug["hoodie-grey"]
    jpeg = encode(small("tshirt-black"), "JPEG", quality=92)
    return {
        "red_tee.jpg": encode(small("tshirt-red"), "JPEG", quality=92),
        "tank.webp": encode(small("tank-olive"), "WEBP", quality=90),
        "hoodie-cutout.png": encode(np.dstack([hoodie["rgb"], hoodie["truth"]]), "PNG"),  # alpha = the mask
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "notes.txt": b"not a garment photo\n",
        "fake.png": b"hello, I am text with a .png name",
        "empty.jpg": b"",
        "huge.png": png_claiming(100_000, 100_000),
        "big.png": png_claiming(5000, 5000),
        "anim.gif": encode(small("tshirt-red"), "GIF"),
        "backdrop_only.png": encode(np.full((512, 384, 3), (236, 233, 226), np.uint8), "PNG"),
        "module.py": b"# the default drop folder is the package folder: source files are skipped\n",
        ".hidden.jpg": b"",
    }


@pytest.fixture
def drop_dir(tmp_path: Path, drop_files: dict[str, bytes]) -> Path:
    d = tmp_path / "drop"
    d.mkdir()
    for name, data in drop_files.items():
        (d / name).write_bytes(data)
    return d


EXPECTED_REJECTIONS = {
    "truncated.jpg": "truncated or corrupt",
    "notes.txt": "not an image",
    "fake.png": "not an image",
    "empty.jpg": "empty file (0 bytes)",
    "huge.png": "decompression bomb",
    "big.png": "5000x5000 px",
    "anim.gif": "unsupported image format GIF",
    "backdrop_only.png": "no usable garment",
}


def test_drop_folder_good_files_prepared_bad_files_rejected_with_reasons(catalog_dir, drop_dir) -> None:
    cat = load_catalog(catalog_dir, drop_dir)
    drops = {e.file: e.garment for e in cat.entries if e.source == "drop"}
    assert set(drops) == {"red_tee.jpg", "tank.webp", "hoodie-cutout.png"}
    assert sum(e.source == "demo" for e in cat.entries) == len(DEMO_DESIGNS)
    reasons = {r.file: r.reason for r in cat.rejected}
    assert set(reasons) == set(EXPECTED_REJECTIONS), reasons
    for name, text in EXPECTED_REJECTIONS.items():
        assert text in reasons[name], (name, reasons[name])
    assert drops["tank.webp"].kind == "tank" and drops["hoodie-cutout.png"].kind == "hoodie"
    assert drops["red_tee.jpg"].name == "Red tee"
    for g in drops.values():   # fitted to VITON-HD's cloth size, mask and landmarks in place
        assert g.image.shape == (1024, 768, 3) and g.mask.shape == (1024, 768) and g.landmarks.shape == (9, 2)
        assert g.id == content_id(g.image, g.mask)


def test_second_load_reads_the_cache_and_computes_nothing(catalog_dir, drop_dir) -> None:
    first = load_catalog(catalog_dir, drop_dir)
    assert first.stats["prepared"] == 3 and first.stats["cached"] == 0
    calls = PREPARE_CALLS["count"]
    second = load_catalog(catalog_dir, drop_dir)
    assert PREPARE_CALLS["count"] == calls, "a cached garment was prepared again"
    assert second.stats["prepared"] == 0 and second.stats["cached"] == 3
    assert [g.id for g in second.garments] == [g.id for g in first.garments]
    for a, b in zip(first.garments, second.garments, strict=True):
        np.testing.assert_array_equal(a.landmarks, b.landmarks)
    assert {r.file: r.reason for r in second.rejected} == {r.file: r.reason for r in first.rejected}
    cached = sorted((catalog_dir / "prepared").iterdir())
    assert sum((p / "garment.json").is_file() for p in cached) == 3


def test_lookup_thumbnails_and_listing(catalog_dir) -> None:
    cat = load_catalog(catalog_dir)
    g = cat.garments[0]
    assert cat.get(g.id) is g and g.id in cat and len(cat) == len(DEMO_DESIGNS)
    with pytest.raises(GarmentNotFound, match="no garment with id 'nope'"):
        cat.get("nope")
    with pytest.raises(KeyError):
        cat.get("nope")
    jpg = cat.thumbnail(g.id)
    assert jpg[:3] == b"\xff\xd8\xff"
    assert max(Image.open(io.BytesIO(jpg)).size) == 192
    png = cat.thumbnail(g.id, size=96, fmt="PNG")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and max(Image.open(io.BytesIO(png)).size) == 96
    listing = cat.listing()
    assert {x["kind"] for x in listing} >= {"tshirt", "longsleeve", "tank", "shirt", "hoodie"}
    assert all(x["source"] == "demo" for x in listing)


def test_ids_are_stable_and_content_derived(demo_dir: Path, demo_items) -> None:
    d = DEMO_DESIGNS[2]
    again = render_garment(d)   # the generator is deterministic: same pixels, same id
    item = next(it for it in demo_items if it["slug"] == d.slug)
    assert content_id(again.image, again.mask) == item["id"]
    g1 = prepare_garment(item["rgb"], "a")
    g2 = prepare_garment(item["rgb"].copy(), "b")
    assert g1.id == g2.id == content_id(g1.image, g1.mask)


def test_missing_or_damaged_demo_catalog_is_regenerated(tmp_path: Path, demo_dir: Path) -> None:
    root = tmp_path / "catalog"
    shutil.copytree(demo_dir, root / "demo")
    (root / "demo" / f"{DEMO_DESIGNS[0].slug}.png").write_bytes(b"garbage")
    cat = load_catalog(root)
    assert len(cat) == len(DEMO_DESIGNS) and not cat.rejected


def test_demo_writer_is_idempotent(tmp_path: Path, demo_dir: Path) -> None:
    root = tmp_path / "demo"
    shutil.copytree(demo_dir, root)
    before = {p.name: p.stat().st_mtime_ns for p in root.iterdir()}
    write_demo_catalog(root)
    assert {p.name: p.stat().st_mtime_ns for p in root.iterdir()} == before
    manifest = json.loads((root / "manifest.json").read_text())
    assert len(manifest["garments"]) >= 8


def test_decode_limits_are_the_callers() -> None:
    rgb = np.zeros((100, 80, 3), np.uint8)
    with pytest.raises(GarmentFileRejected, match="both sides must be >= 128"):
        decode_garment_file(encode(rgb, "PNG"), "x.png", DropLimits(min_side=128))
    with pytest.raises(GarmentFileRejected, match="the limit is 10 bytes"):
        decode_garment_file(encode(rgb, "PNG"), "x.png", DropLimits(max_bytes=10))
    image, mask = decode_garment_file(encode(rgb, "PNG"), "x.png")
    assert image.shape == (100, 80, 3) and mask is None


def test_demo_cli_keeps_a_valid_catalog(tmp_path: Path, demo_dir: Path, repo_root: Path) -> None:
    import subprocess
    import sys

    root = tmp_path / "demo"
    shutil.copytree(demo_dir, root)
    out = subprocess.run([sys.executable, "-m", "garments.demo", "--out", str(root)], cwd=repo_root,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"{len(DEMO_DESIGNS)} garments in {root}" in out.stdout
    assert "present and valid: nothing to do" in out.stderr


def test_prepare_fits_any_photo_to_the_vitonhd_canvas(demo_items, iou) -> None:
    """A landscape, noisy photo: masked at its own scale, then padded onto 768x1024 with its backdrop colour."""
    import cv2

    it = next(i for i in demo_items if i["slug"] == "tshirt-red")
    square = cv2.copyMakeBorder(it["rgb"], 0, 0, 128, 128, cv2.BORDER_REPLICATE)[62:962]   # 1024 wide, 900 high
    truth = cv2.copyMakeBorder(it["truth"], 0, 0, 128, 128, cv2.BORDER_CONSTANT, value=0)[62:962]
    noise = np.random.default_rng(0).normal(0, 2.5, square.shape)
    photo = np.clip(square + noise, 0, 255).astype(np.uint8)
    g = prepare_garment(photo, "square")
    assert g.image.shape == (1024, 768, 3) and g.kind == "tshirt"
    expected = np.zeros((1024, 768), np.uint8)     # scale 0.75 -> 768 x 675, centred: rows 174..848
    expected[174:849] = cv2.resize(truth, (768, 675), interpolation=cv2.INTER_AREA)
    assert iou(g.mask, expected) >= 0.97
    assert (g.mask[:174] == 0).all() and (g.mask[849:] == 0).all()
    assert np.abs(g.image[:100].astype(int) - photo[:5].reshape(-1, 3).mean(axis=0)).max() < 12  # backdrop fill
