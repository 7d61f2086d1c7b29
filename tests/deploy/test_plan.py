"""The container launcher's plan from env_config.json (mirror.container_plan): no engine needed.

The real containers are in test_containers.py; here: what each container is given, the errors a
config or a role choice gets, that the launcher's copies of config facts match mirror.config, and
that it runs on the system's python3 without the venv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mirror import config as config_mod
from mirror import container_plan as cp
from testing.deployment import write_config

ROOT = Path(__file__).resolve().parents[2]


def _cfg(tmp_path: Path, **overrides: dict) -> cp.HostConfig:
    path = write_config(tmp_path, overrides)
    return cp.HostConfig(path, {})


def _plan(cfg: cp.HostConfig, role: str | None = None) -> dict[str, cp.ContainerSpec]:
    roles, private = cp.roles_here(cfg, role)
    specs = cp.plan(cfg, roles, private_net=private, project="p", tag="t",
                    secrets=({"VM__gvirtus__token_file": "/run/secrets/virtual-mirror/gvirtus.token_file"},
                             ["/stage/gvirtus.token_file:/run/secrets/virtual-mirror/gvirtus.token_file:ro"]),
                    env={"VM_ALLOCATOR": "system"})
    return {s.role: s for s in specs}


def test_launcher_copies_of_config_facts_match_mirror_config() -> None:
    assert tuple(cp.SECRET_KEYS) == tuple(config_mod.FILE_KEYS)
    for section, values in cp.DEFAULTS.items():
        for key, value in values.items():
            if key in config_mod.DEFAULTS.get(section, {}):
                assert config_mod.DEFAULTS[section][key] == value, (section, key)


def test_local_runs_three_containers_on_a_private_network(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    specs = _plan(cfg)
    assert list(specs) == ["viton", "node2", "node1"]
    n1, n2, vt = specs["node1"], specs["node2"], specs["viton"]
    https, health, viton_port = (cfg.data["node1"]["https_port"], cfg.data["node2"]["health_port"],
                                 cfg.data["viton"]["port"])
    assert {s.network for s in specs.values()} == {"p-net"}
    assert n1.image == "virtual-mirror-node1:t" and vt.image == "virtual-mirror-viton:t"
    # Only node 1's HTTPS and node 2's health are published, on the configured loopback host.
    assert n1.publish == [f"127.0.0.1:{https}:{https}"]
    assert n2.publish == [f"127.0.0.1:{health}:{health}"]
    assert vt.publish == []
    assert n2.env["VM__viton__endpoint"] == f"tcp://viton:{viton_port}" and n2.aliases == ["node2"]
    assert vt.env["VM__viton__endpoint"] == f"tcp://0.0.0.0:{viton_port}" and vt.aliases == ["viton"]
    assert n1.env["VM__node2__host"] == "node2" and n1.env["VM__node1__host"] == "0.0.0.0"
    for s in specs.values():
        assert s.env["VM_CONFIG"] == cp.CONFIG_IN_CONTAINER
        assert s.env["VM_HOST_PROCESSES"] == "4"  # 1 + 2 + 1 service processes share the CPUs
        assert s.env["VM__paths__var_dir"] == "/app/var" and "p-var:/app/var" in s.mounts
        assert s.env["VM__gvirtus__token_file"].startswith(cp.SECRETS_IN_CONTAINER)
        assert s.env["VM_ALLOCATOR"] == "system"
    args = n1.run_args("podman", "p")
    assert args[:3] == ["run", "-d", "--name"] and args[-1] == "virtual-mirror-node1:t"
    assert ["--restart", "unless-stopped"] == args[args.index("--restart"):args.index("--restart") + 2]
    assert "io.virtual-mirror.project=p" in args


def test_distributed_roles_use_the_host_network_and_the_configured_ports(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, DEPLOYMENT="DISTRIBUTED")
    specs = _plan(cfg, "node2")
    assert list(specs) == ["viton", "node2"]  # viton.placement = node2
    assert {s.network for s in specs.values()} == {"host"}
    n2 = cfg.data["node2"]
    assert specs["node2"].host_ports == [("node2.gvirtus_port", "127.0.0.1", n2["gvirtus_port"]),
                                         ("node2.gateway_port", "127.0.0.1", n2["gateway_port"]),
                                         ("node2.health_port", "127.0.0.1", n2["health_port"])]
    assert "VM__viton__endpoint" not in specs["viton"].env  # derived from the config, as for processes
    assert list(_plan(cfg, "node1")) == ["node1"]
    assert list(_plan(cfg, "viton")) == ["viton"]
    placed = _cfg(tmp_path / "b", DEPLOYMENT="DISTRIBUTED", viton={"placement": "node1"})
    assert list(_plan(placed, "node1")) == ["viton", "node1"]
    assert list(_plan(placed, "node2")) == ["node2"]


def test_role_and_deployment_must_agree(tmp_path: Path) -> None:
    with pytest.raises(cp.ContainerError, match="--role node1 is for DEPLOYMENT=DISTRIBUTED"):
        cp.roles_here(_cfg(tmp_path), "node1")
    with pytest.raises(cp.ContainerError, match="say which role this host runs"):
        cp.roles_here(_cfg(tmp_path / "d", DEPLOYMENT="DISTRIBUTED"), None)


def test_overrides_from_the_environment_apply_as_in_mirror_config(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    cfg = cp.HostConfig(path, {"DEPLOYMENT": "DISTRIBUTED", "VM__node1__https_port": "4443",
                               "VM__transport__rdma__gid_index": "3", "VM__node2__host": "10.0.0.2"})
    assert cfg.deployment == "DISTRIBUTED"
    assert cfg.get("node1", "https_port") == 4443 and cfg.get("node2", "host") == "10.0.0.2"
    assert cfg.data["transport"]["rdma"]["gid_index"] == 3


def test_bad_config_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(cp.ContainerError, match="cannot read config file .*nope.json"):
        cp.HostConfig(tmp_path / "nope.json", {})
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(cp.ContainerError, match="bad.json is not valid JSON"):
        cp.HostConfig(bad, {})


@pytest.mark.skipif(os.geteuid() != 0, reason="staging chowns the copies to uid 10001: needs root")
def test_staged_secrets_are_copies_owned_by_the_images_user(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path / "cfg")
    overrides, mounts = cp.stage_secrets(cfg, tmp_path / "stage")
    copy = tmp_path / "stage" / "gvirtus.token_file"
    assert copy.read_text() == Path(cfg.data["gvirtus"]["token_file"]).read_text()
    st = copy.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (cp.CONTAINER_UID, cp.CONTAINER_UID, 0o400)
    assert overrides["VM__gvirtus__token_file"] == f"{cp.SECRETS_IN_CONTAINER}/gvirtus.token_file"
    assert f"{tmp_path / 'stage' / 'env_config.json'}:{cp.CONFIG_IN_CONTAINER}:ro" in mounts
    assert Path(cfg.data["gvirtus"]["token_file"]).stat().st_uid == os.geteuid()  # the original is untouched


@pytest.mark.skipif(os.geteuid() != 0, reason="staging needs root")
def test_a_missing_secret_file_is_named(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path / "cfg", gvirtus={"token_file": str(tmp_path / "missing.token")})
    with pytest.raises(cp.ContainerError, match=r"gvirtus.token_file = .*missing.token.*: no such file"):
        cp.stage_secrets(cfg, tmp_path / "stage")


def test_the_launcher_needs_only_the_standard_library(tmp_path: Path) -> None:
    """start_application.sh --containers runs it with the system's python3 (-I): `-S` (no site-packages
    at all) proves it imports nothing outside the standard library, the mirror package's deps included."""
    bad = tmp_path / "env_config.json"
    bad.write_text(json.dumps({"DEPLOYMENT": "DISTRIBUTED"}))
    out = subprocess.run([sys.executable, "-I", "-S", str(ROOT / "mirror" / "containers.py"), "--config", str(bad)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert "say which role this host runs: --role node1|node2|viton" in out.stderr
