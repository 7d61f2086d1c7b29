"""env_config.json validation: every bad config gives ONE clear error naming key and value."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mirror import ConfigError, load_config
from tests.mirror.helpers import ROOT, make_config


def _write(tmp_path: Path, mutate) -> Path:
    cfg = json.loads(make_config(tmp_path).read_text())
    mutate(cfg)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(cfg))
    return p


def test_shipped_config_is_valid() -> None:
    cfg = load_config(ROOT / "env_config.json", env={})
    assert cfg.deployment == "LOCAL"
    assert cfg["node2"]["gvirtus_port"] == 8888
    assert cfg["transport"]["mode"] in {"auto", "rdma", "tcp"}


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["node1"].update(htps_port=1), "unknown key node1.htps_port = 1"),
        (lambda c: c.update(EXTRA=True), "unknown key EXTRA = true"),
        (lambda c: c["node2"].update(gvirtus_port=70000), "node2.gvirtus_port = 70000 is invalid"),
        (lambda c: c["node2"].update(gateway_port="9555"), 'node2.gateway_port = "9555" is invalid'),
        (lambda c: c["node1"].update(https_port=0), "node1.https_port = 0 is invalid"),
        (lambda c: c.update(DEPLOYMENT="CLOUD"), 'DEPLOYMENT = "CLOUD" is invalid'),
        (lambda c: c["transport"].update(mode="udp"), 'transport.mode = "udp" is invalid'),
        (lambda c: c["viton"].update(engine="magic"), 'viton.engine = "magic" is invalid'),
        (lambda c: c["node1"].update(cert_file="/nonexistent/cert.pem", key_file="/nonexistent/key.pem"),
         'node1.cert_file = "/nonexistent/cert.pem": no such file'),
        (lambda c: c["gvirtus"].update(token_file="/nonexistent/token"),
         'gvirtus.token_file = "/nonexistent/token": no such file'),
        (lambda c: c["node2"].update(gateway_port=c["node2"]["gvirtus_port"]),
         "is the same port as node2.gvirtus_port"),
        (lambda c: c["gvirtus"].update(secure=True), "gvirtus.secure = true needs gvirtus.tls_cert_file"),
        (lambda c: c["transport"].update(secure=True), "transport.secure = true needs transport.curve_key_dir"),
        (lambda c: c.pop("node2"), "'node2' is a required property"),
        (lambda c: c["limits"].update(upload_max_mb=-1), "limits.upload_max_mb = -1 is invalid"),
    ],
)
def test_bad_config_names_key_and_value(tmp_path: Path, mutate, expected: str) -> None:
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    assert expected in str(err.value)
    assert str(path) in str(err.value)


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"DEPLOYMENT": "LOCAL",')
    with pytest.raises(ConfigError, match="is not valid JSON"):
        load_config(bad, env={})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.json", env={})


def test_environment_overrides(tmp_path: Path) -> None:
    path = make_config(tmp_path)
    cfg = load_config(path, env={"DEPLOYMENT": "DISTRIBUTED", "VM__node2__host": "10.0.0.2",
                                 "VM__transport__rdma__gid_index": "3", "VM__gvirtus__secure": "false"})
    assert cfg.deployment == "DISTRIBUTED"
    assert cfg["node2"]["host"] == "10.0.0.2"
    assert cfg["transport"]["rdma"]["gid_index"] == 3
    with pytest.raises(ConfigError, match=r"node2\.gvirtus_port = \"x\" is invalid"):
        load_config(path, env={"VM__node2__gvirtus_port": "x"})
    with pytest.raises(ConfigError, match="unknown key node2.prot"):
        load_config(path, env={"VM__node2__prot": "1"})


def test_secret_from_file_or_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(make_config(tmp_path), env={})
    assert cfg.secret("gvirtus", "token_file", "VM_GVIRTUS_TOKEN") == "test-token-gvirtus.token"
    path = _write(tmp_path, lambda c: c["gvirtus"].update(token_file=None))
    monkeypatch.setenv("VM_GVIRTUS_TOKEN", "from-env")
    assert load_config(path, env={}).secret("gvirtus", "token_file", "VM_GVIRTUS_TOKEN") == "from-env"


def test_no_secret_values_in_shipped_config() -> None:
    text = (ROOT / "env_config.json").read_text().lower()
    for word in ("password", "secret\":", "token\":", "-----begin"):
        assert word not in text


def test_cli_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda c: c["node2"].update(health_port=99999))
    done = subprocess.run([sys.executable, "-m", "mirror.check_config", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "node2.health_port = 99999" in lines[0]
