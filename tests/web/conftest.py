"""Fixtures of the web-layer tests: a config in a temp folder, encoded test photos, an app."""

from __future__ import annotations

import copy
import io
import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mirror.config import ROOT, validate
from tests.web.doubles import InMemoryTestCatalog, TorsoTintTestRunner
from tests.web.redis_server import run_redis

OPERATOR_TOKEN = "test-operator-token-0123456789abcdef"


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_config_dict(tmp_path: Path, port: int = 18443, **over: Any) -> dict:
    raw = json.loads((ROOT / "env_config.json").read_text())
    token = tmp_path / "operator.token"
    token.write_text(OPERATOR_TOKEN + "\n")
    base = _merge(raw, {
        "DEPLOYMENT": "LOCAL",
        "node1": {"host": "127.0.0.1", "https_port": port, "cert_file": None, "key_file": None,
                  "operator_token_file": str(token), "workers": 2},
        "gvirtus": {"token_file": None},
        "paths": {"var_dir": str(tmp_path / "var"), "catalog_dir": str(tmp_path / "catalog"),
                  "garment_drop_dir": str(tmp_path / "drop")},
    })
    return _merge(base, over)


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Any]:
    def make(**over: Any):  # type: ignore[no-untyped-def]
        return validate(make_config_dict(tmp_path, **over), source="test-config")
    return make


def encode(img: np.ndarray, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def demo_catalog_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog_dir holding the garments package's demo catalog: a copy of the installed one
    (paths.catalog_dir/demo) when valid, else rendered once per session (~10 s)."""
    import shutil

    from garments.demo.catalog import demo_catalog_valid, write_demo_catalog

    root = tmp_path_factory.mktemp("catalog")
    installed = ROOT / json.loads((ROOT / "env_config.json").read_text())["paths"]["catalog_dir"] / "demo"
    if demo_catalog_valid(installed):
        shutil.copytree(installed, root / "demo")
    else:
        write_demo_catalog(root / "demo")
    return root


@pytest.fixture(scope="session")
def astronaut_jpeg(astronaut: np.ndarray) -> bytes:
    return encode(astronaut, "JPEG", quality=92)


@pytest.fixture
def catalog() -> InMemoryTestCatalog:
    return InMemoryTestCatalog()


@pytest.fixture
def runner(catalog: InMemoryTestCatalog) -> TorsoTintTestRunner:
    return TorsoTintTestRunner(catalog)


@pytest.fixture(scope="session")
def redis_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server (Debian's), memory only, on a unix socket, for the whole session."""
    yield from run_redis(tmp_path_factory.mktemp("redis"))


@pytest.fixture
def store_kind() -> str:
    """The job store app_factory's apps use; test modules override it to run on both stores."""
    return "memory"


_prefixes = itertools.count()


def store_config(kind: str, request: pytest.FixtureRequest) -> dict:
    """Config overrides for `kind`; each redis app gets its own key prefix (its own jobs and counters)."""
    if kind == "memory":
        return {"node1": {"store": "memory"}}
    sock = request.getfixturevalue("redis_socket")
    return {"node1": {"store": "redis", "redis": {"unix_socket": sock, "key_prefix": f"t{next(_prefixes)}-"}}}


@pytest.fixture
def app_factory(make_config: Callable[..., Any], runner: TorsoTintTestRunner,
                catalog: InMemoryTestCatalog, store_kind: str, request: pytest.FixtureRequest) -> Callable[..., Any]:
    from node1.web import create_app, state_of

    made = []

    def make(cfg_over: dict | None = None, **kw: Any):  # type: ignore[no-untyped-def]
        cfg = make_config(**_merge(store_config(store_kind, request), cfg_over or {}))
        app = create_app(cfg, runner=kw.pop("runner", runner), catalog=kw.pop("catalog", catalog), **kw)
        app.testing = True
        made.append(app)
        return app

    yield make
    for app in made:
        state_of(app).jobs.shutdown()
