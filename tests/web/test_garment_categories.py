"""Garment categories through the operator API and the catalog: `category` validated, a top uploaded as
a bottom refused with a typed error, a bottom and a dress added into their drop sub-folders, the listing
carrying each garment's category; node 2's legs_not_in_view reply becomes the shopper's typed error."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from garments import CATEGORIES
from garments.demo import DEMO_DESIGNS
from node1.tryon.catalog import WebCatalog, open_catalog
from node1.tryon.errors import BadGarmentCategory, GarmentCategoryMismatch, LegsNotInView
from node1.tryon.interface import GARMENT_CATEGORIES
from node1.tryon.runner import error_from_reply
from tests.web.conftest import OPERATOR_TOKEN, encode
from viton.contract import ErrorCode

HEADERS = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


@pytest.fixture
def web_catalog(make_config, demo_catalog_dir: Path, tmp_path: Path) -> WebCatalog:
    cfg = make_config(paths={"catalog_dir": str(demo_catalog_dir), "garment_drop_dir": str(tmp_path / "drop")})
    return open_catalog(cfg, generate_demo=False)


def _recoloured(web_catalog: WebCatalog, slug_kind: str, shift: tuple[int, int, int]) -> bytes:
    """The demo garment of kind `slug_kind` recoloured (a new content id), as PNG bytes."""
    g = next(x for x in web_catalog.catalog.garments if x.kind == slug_kind)
    img = g.image.copy()
    cloth = g.mask >= 128
    img[cloth] = (img[cloth].astype(int) // 2 + np.array(shift)).clip(0, 255).astype(np.uint8)
    return encode(img, "PNG")


def _post(client, data: bytes, name: str, category: str | None):  # type: ignore[no-untyped-def]
    form = {"image": (io.BytesIO(data), "g.png"), "name": name}
    if category is not None:
        form["category"] = category
    return client.post("/api/garments", data=form, headers=HEADERS, content_type="multipart/form-data")


def test_the_categories_agree_everywhere() -> None:
    from viton import contract

    assert GARMENT_CATEGORIES == CATEGORIES == contract.GARMENT_CATEGORIES
    from garments import KIND_CATEGORY

    assert KIND_CATEGORY == contract.KIND_CATEGORY


def test_listing_carries_the_category_of_every_garment(web_catalog: WebCatalog, app_factory) -> None:
    client = app_factory(catalog=web_catalog).test_client()
    items = client.get("/api/garments").get_json()["garments"]
    assert len(items) == len(DEMO_DESIGNS)
    counts = {c: sum(i["category"] == c for i in items) for c in CATEGORIES}
    assert counts["bottom"] >= 2 and counts["dress"] >= 1 and counts["top"] == 10, counts


def test_category_is_validated(web_catalog: WebCatalog, app_factory, tmp_path: Path) -> None:
    client = app_factory(catalog=web_catalog).test_client()
    data = _recoloured(web_catalog, "trousers", (0, 60, 0))
    r = _post(client, data, "Green jeans", "hat")
    body = r.get_json()
    assert r.status_code == 422 and body["error"]["code"] == "bad_garment_category"
    assert "'hat'" in body["error"]["message"] and "top, bottom, dress" in body["error"]["message"]
    with pytest.raises(BadGarmentCategory, match="'shoes' is not one of top, bottom, dress"):
        web_catalog.add(data, "Green jeans", "shoes")
    assert not (tmp_path / "drop").exists() or not any((tmp_path / "drop").rglob("*.png"))


def test_a_top_uploaded_as_a_bottom_or_a_dress_is_refused(web_catalog: WebCatalog, app_factory,
                                                         tmp_path: Path) -> None:
    client = app_factory(catalog=web_catalog).test_client()
    tee = _recoloured(web_catalog, "tshirt", (0, 0, 90))
    r = _post(client, tee, "Blue tee", "bottom")
    body = r.get_json()
    assert r.status_code == 422 and body["error"]["code"] == "garment_category_mismatch", body
    assert "does not look like a bottom" in body["error"]["message"]
    with pytest.raises(GarmentCategoryMismatch, match="does not look like a dress") as err:
        web_catalog.add(tee, "Blue tee", "dress")
    assert err.value.code == "garment_category_mismatch"
    assert not (tmp_path / "drop").exists() or not any((tmp_path / "drop").rglob("*.png"))
    assert len(web_catalog.list()) == len(DEMO_DESIGNS)


def test_a_bottom_and_a_dress_are_added_in_their_category(web_catalog: WebCatalog, app_factory, make_config,
                                                         demo_catalog_dir: Path, tmp_path: Path) -> None:
    client = app_factory(catalog=web_catalog).test_client()
    r = _post(client, _recoloured(web_catalog, "trousers", (0, 60, 0)), "Green jeans", "bottom")
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["category"] == "bottom"
    r2 = _post(client, _recoloured(web_catalog, "dress", (90, 0, 0)), "Red dress", "dress")
    assert r2.status_code == 201 and r2.get_json()["category"] == "dress", r2.get_json()
    assert (tmp_path / "drop" / "bottom" / "Green_jeans.png").is_file()
    assert (tmp_path / "drop" / "dress" / "Red_dress.png").is_file()
    listed = {i["id"]: i["category"] for i in client.get("/api/garments").get_json()["garments"]}
    assert listed[r.get_json()["id"]] == "bottom" and listed[r2.get_json()["id"]] == "dress"
    jeans = web_catalog.garment(r.get_json()["id"])
    assert jeans.kind == "trousers" and jeans.landmarks.shape == (7, 2)
    # the category survives a restart: the sub-folder says it
    again = open_catalog(make_config(paths={"catalog_dir": str(demo_catalog_dir),
                                            "garment_drop_dir": str(tmp_path / "drop")}), generate_demo=False)
    assert again.get(r.get_json()["id"]).category == "bottom" and again.get(r2.get_json()["id"]).category == "dress"


def test_no_category_means_a_top(web_catalog: WebCatalog, app_factory) -> None:
    client = app_factory(catalog=web_catalog).test_client()
    r = _post(client, _recoloured(web_catalog, "tshirt", (60, 0, 60)), "Purple tee", None)
    assert r.status_code == 201 and r.get_json()["category"] == "top"


def test_legs_not_in_view_reply_is_the_shoppers_typed_error() -> None:
    err = error_from_reply({"code": ErrorCode.LEGS_NOT_IN_VIEW.value, "message": "found RHip, LHip"})
    assert isinstance(err, LegsNotInView) and err.code == "legs_not_in_view"
    assert "down to the knees" in err.message and "found RHip, LHip" in err.message


def test_garment_frames_carry_the_categorys_landmark_rows(web_catalog: WebCatalog) -> None:
    from dataclasses import replace

    from node1.tryon.node2_client import garment_frame
    from transport import InvalidRequest

    jeans = next(g for g in web_catalog.catalog.garments if g.kind == "trousers")
    frame = garment_frame(jeans)
    assert frame.meta["kind"] == "trousers" and frame.tensors["landmarks"].shape == (7, 2)
    with pytest.raises(InvalidRequest, match=r"a bottom \('trousers'\) has 7 landmarks"):
        garment_frame(replace(jeans, landmarks=np.zeros((9, 2), np.float32)))
