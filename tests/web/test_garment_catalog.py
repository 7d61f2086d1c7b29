"""node1.tryon.catalog: the garments package's real Catalog behind the web API (demo catalog + drops)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from garments.demo import DEMO_DESIGNS
from node1.tryon import BadGarment, GarmentNameTooLong, GarmentShowsPerson, UnknownGarment
from node1.tryon.catalog import MAX_NAME_CHARS, WebCatalog, open_catalog
from tests.web.conftest import OPERATOR_TOKEN, encode


@pytest.fixture
def web_catalog(make_config, demo_catalog_dir: Path, tmp_path: Path) -> WebCatalog:
    cfg = make_config(paths={"catalog_dir": str(demo_catalog_dir), "garment_drop_dir": str(tmp_path / "drop")})
    return open_catalog(cfg, generate_demo=False)


def _demo_product_photo(web_catalog: WebCatalog) -> tuple[bytes, str]:
    """A demo garment's product image (RGB, plain background) as PNG bytes, and its id."""
    g = web_catalog.catalog.garments[0]
    return encode(g.image, "PNG"), g.id


def test_lists_the_demo_garments_with_thumbnails(web_catalog: WebCatalog):
    items = web_catalog.list()
    assert len(items) == len(DEMO_DESIGNS) and all(len(i.id) == 64 and i.name for i in items)
    data, mime = web_catalog.thumbnail(items[0].id)
    assert mime == "image/jpeg" and max(Image.open(io.BytesIO(data)).size) == 192
    assert web_catalog.get(items[3].id).name == items[3].name
    g = web_catalog.garment(items[3].id)
    assert g.image.ndim == 3 and g.mask.shape == g.image.shape[:2]
    with pytest.raises(UnknownGarment, match="no garment with id 'nope'"):
        web_catalog.get("nope")
    with pytest.raises(UnknownGarment):
        web_catalog.thumbnail("nope")


def test_operator_add_writes_a_drop_and_survives_reload(web_catalog: WebCatalog, make_config, demo_catalog_dir,
                                                         tmp_path: Path):
    # A new garment: a demo product photo recoloured, so its content id is new.
    g = web_catalog.catalog.garments[0]
    img = g.image.copy()
    cloth = g.mask >= 128
    img[cloth] = (img[cloth].astype(int) // 2 + np.array([0, 0, 120])).clip(0, 255).astype(np.uint8)
    info = web_catalog.add(encode(img, "PNG"), "Blue crew tee!")
    assert info.name == "Blue crew tee" and info.id in {i.id for i in web_catalog.list()}
    assert len(web_catalog.list()) == len(DEMO_DESIGNS) + 1
    assert (tmp_path / "drop" / "Blue_crew_tee.png").is_file()
    again = open_catalog(make_config(paths={"catalog_dir": str(demo_catalog_dir),
                                            "garment_drop_dir": str(tmp_path / "drop")}), generate_demo=False)
    assert info.id in {i.id for i in again.list()}


def test_operator_add_refuses_a_photo_without_garment_and_writes_nothing(web_catalog: WebCatalog, tmp_path: Path):
    flat = encode(np.full((300, 300, 3), 200, np.uint8), "PNG")
    with pytest.raises(BadGarment, match="no usable garment|refused"):
        web_catalog.add(flat, "Nothing")
    assert not (tmp_path / "drop").exists() or not any((tmp_path / "drop").iterdir())
    with pytest.raises(BadGarment, match="readable name"):
        web_catalog.add(flat, "!!!")


def test_operator_api_with_the_real_catalog(web_catalog: WebCatalog, app_factory, runner):
    client = app_factory(catalog=web_catalog).test_client()
    items = client.get("/api/garments").get_json()["garments"]
    assert len(items) == len(DEMO_DESIGNS)
    assert client.get(items[0]["thumbnail_url"]).mimetype == "image/jpeg"
    data, _ = _demo_product_photo(web_catalog)
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    r = client.post("/api/garments", data={"image": (io.BytesIO(data), "g.png"), "name": "Red again"},
                    headers=headers, content_type="multipart/form-data")
    assert r.status_code == 201 and r.get_json()["name"] == "Red again"
    r2 = client.post("/api/garments", data={"image": (io.BytesIO(data), "g.png"), "name": "Red again"},
                     headers=headers, content_type="multipart/form-data")
    assert r2.get_json()["id"] == r.get_json()["id"]            # the same file twice: one garment
    assert len(client.get("/api/garments").get_json()["garments"]) == len(DEMO_DESIGNS) + 1
    assert client.get(f"/api/garments/{r.get_json()['id']}/thumbnail").status_code == 200


def test_operator_add_refuses_a_photo_of_a_person(web_catalog: WebCatalog, astronaut: np.ndarray, tmp_path: Path):
    with pytest.raises(GarmentShowsPerson, match="shows a person") as err:
        web_catalog.add(encode(astronaut, "PNG"), "Astronaut suit")
    assert err.value.code == "garment_shows_person" and "product photo" in err.value.message
    assert not (tmp_path / "drop").exists() or not any((tmp_path / "drop").iterdir())
    assert len(web_catalog.list()) == len(DEMO_DESIGNS)


def test_operator_name_limit_is_the_specs(web_catalog: WebCatalog):
    import yaml

    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml").read_text())
    schema = spec["paths"]["/api/garments"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["properties"]["name"]["maxLength"] == MAX_NAME_CHARS == 120
    g = web_catalog.catalog.garments[0]
    img = g.image.copy()
    img[g.mask >= 128] = (img[g.mask >= 128].astype(int) // 3 + np.array([90, 0, 90])).clip(0, 255).astype(np.uint8)
    with pytest.raises(GarmentNameTooLong, match="500 characters long; the limit is 120") as err:
        web_catalog.add(encode(img, "PNG"), "x" * 500)
    assert err.value.code == "garment_name_too_long"
    longest = "Purple tee " + "y" * (MAX_NAME_CHARS - 11)
    assert web_catalog.add(encode(img, "PNG"), longest).name == longest     # kept whole, not cut


def test_operator_api_answers_422_for_a_person_and_a_long_name(web_catalog: WebCatalog, app_factory,
                                                                astronaut: np.ndarray):
    client = app_factory(catalog=web_catalog).test_client()
    headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    r = client.post("/api/garments", data={"image": (io.BytesIO(encode(astronaut, "JPEG")), "me.jpg"),
                                           "name": "Me"}, headers=headers, content_type="multipart/form-data")
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "garment_shows_person"
    data, _ = _demo_product_photo(web_catalog)
    r = client.post("/api/garments", data={"image": (io.BytesIO(data), "g.png"), "name": "n" * 500},
                    headers=headers, content_type="multipart/form-data")
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "garment_name_too_long"
    assert "limit is 120" in r.get_json()["error"]["message"]
    assert len(client.get("/api/garments").get_json()["garments"]) == len(DEMO_DESIGNS)
