"""The `pool` section of env_config.json: defaults, round trip, and errors naming the key and value."""

from __future__ import annotations

import json

import pytest

from mirror import ConfigError
from mirror.config import ROOT, validate
from node1.tryon.pool_runner import pool_configured


def _raw(**pool: object) -> dict:
    raw = json.loads((ROOT / "env_config.json").read_text())
    raw["gvirtus"]["token_file"] = None
    raw["node1"]["operator_token_file"] = None
    if pool:
        raw["pool"] = pool
    return raw


MEMBER = {"name": "gpu-a", "host": "10.0.0.2", "gvirtus_port": 8888, "gateway_port": 9555, "health_port": 9556}


def test_no_pool_section_keeps_the_single_node2_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VM_REGISTRATION_TOKEN", raising=False)
    cfg = validate(_raw())
    assert cfg["pool"]["members"] == [] and cfg["pool"]["dns"] is None and not pool_configured(cfg)
    assert validate(cfg.as_dict())["node2"]["name"] is None          # defaults survive a round trip


def test_members_make_a_pool() -> None:
    cfg = validate(_raw(members=[MEMBER, {**MEMBER, "name": "gpu-b", "host": "10.0.0.3"}]))
    assert pool_configured(cfg) and [m["name"] for m in cfg["pool"]["members"]] == ["gpu-a", "gpu-b"]


@pytest.mark.parametrize(("pool", "match"), [
    ({"members": [MEMBER, MEMBER]}, 'pool.members names "gpu-a" twice'),
    ({"members": [MEMBER, {**MEMBER, "name": "gpu-b"}]}, "lists the gateway 10.0.0.2:9555 twice"),
    ({"members": [{**MEMBER, "gateway_port": 0}]}, r"pool.members.0.gateway_port = 0 is invalid"),
    ({"members": [{**MEMBER, "name": "no spaces"}]}, r"pool.members.0.name = \"no spaces\" is invalid"),
    ({"dns": {"name": "node2-headless", "gvirtus_port": 1, "gateway_port": 2}}, "health_port"),
    ({"dns": {"name": "x", "resolver": "not-an-ip", "gvirtus_port": 1, "gateway_port": 2, "health_port": 3}},
     "pool.dns"),
    ({"registration_token_file": "secrets/no-such.token"}, "pool.registration_token_file"),
    ({"colour": "red"}, "unknown key pool.colour"),
])
def test_pool_errors_name_the_key(pool: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        validate(_raw(**pool))
