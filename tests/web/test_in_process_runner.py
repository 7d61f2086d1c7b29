"""node1.tryon.in_process behind the web API: REAL components in process (node1.tryon.preprocess on the CPU,
the configured VITON engine, the demo garment catalog) — the astronaut photo's torso changes, her face
does not. Skipped with the reason when preprocessing or its model files are not available here.

Opt-in (--run-slow): the real CPU preprocessing took 10-30 s per photo on this shared 2-core machine
while other work ran, which alone would exceed the web tests' time budget.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from node1.web import state_of


@pytest.fixture(scope="module")
def local_parts(demo_catalog_dir, tmp_path_factory):
    from mirror import ModelFileError
    from mirror.config import validate
    from node1.tryon.in_process import build_in_process  # our own code: an ImportError fails the test
    from tests.web.conftest import make_config_dict

    tmp = tmp_path_factory.mktemp("local")
    cfg = validate(make_config_dict(tmp, paths={"catalog_dir": str(demo_catalog_dir)},
                                    limits={"request_timeout_s": 600}), "test-config")
    try:
        runner, catalog = build_in_process(cfg)
    except ModelFileError as exc:
        pytest.skip(f"model files missing (run the model fetch step): {exc}")
    return cfg, runner, catalog


@pytest.mark.slow
def test_real_in_process_tryon_over_the_api(local_parts, astronaut, astronaut_jpeg):
    from node1.web import create_app

    cfg, runner, catalog = local_parts
    app = create_app(cfg, runner=runner, catalog=catalog)
    try:
        client = app.test_client()
        garment = next(g for g in client.get("/api/garments").get_json()["garments"] if "tee" in g["name"].lower())
        r = client.post("/api/tryon?mode=async", data={"photo": (io.BytesIO(astronaut_jpeg), "a.jpg"),
                                                      "garment": garment["id"]}, content_type="multipart/form-data")
        assert r.status_code == 202
        events = client.get(r.get_json()["events_url"]).get_data(as_text=True)
        assert re.findall(r"^event: (\w+)", events, re.M) == ["stage"] * 4 + ["done"], events
        done = client.get(r.get_json()["status_url"]).get_json()
        assert done["state"] == "done", done
        assert done["transport"] == "inproc" and done["device"] == "cpu"
        assert {"pose", "parsing", "tryon", "total"} <= set(done["timings_ms"])
        out = np.asarray(Image.open(io.BytesIO(client.get(done["result_url"]).data)).convert("RGB")).astype(int)
        assert out.shape == astronaut.shape
        face = (slice(60, 200), slice(170, 300))
        torso = (slice(330, 480), slice(150, 350))
        assert np.abs(out[face] - astronaut[face]).mean() < 8          # her face did not change
        assert np.abs(out[torso] - astronaut[torso]).mean() > 25       # her torso did
        # No person: the cameraman photo is a person too, so use a plain wall.
        wall = np.full((512, 512, 3), 180, np.uint8)
        buf = io.BytesIO()
        Image.fromarray(wall).save(buf, format="PNG")
        r = client.post("/api/tryon", data={"photo": (io.BytesIO(buf.getvalue()), "wall.png"),
                                            "garment": garment["id"]}, content_type="multipart/form-data")
        assert r.status_code == 422 and r.get_json()["error"]["code"] == "no_person", r.get_json()
        health = client.get("/health").get_json()
        assert health["transport"] == "inproc" and any("viton." in m for m in health["models_loaded"])
    finally:
        state_of(app).jobs.shutdown()
