"""The Grafana dashboard and the Prometheus scrape config against a RUNNING deployment: every metric a
dashboard query names is exported by node 1's /metrics or node 2's, scraped from start_application.sh's
LOCAL deployment with node 1 on a one-member pool (its own node 2) after a real try-on and a refused one.
The same deployment shows the pool path end to end without namespaces (no root needed)."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from node1.cli.http_client import ApiError, WebClient
from testing.deployment import LocalDeployment
from tests.faults.deployment import astronaut_jpeg

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "virtual-mirror.json"
SCRAPE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
REQUEST_TIMEOUT_S = 240
READY_WAIT_S = 120
# PromQL words that are not metric names (functions and aggregations are told apart by their "(").
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                "offset", "inf", "nan"}
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "summary": ("_sum", "_count", "_created"), "gauge": ("",), "info": ("_info",), "untyped": ("",)}


def dashboard_queries() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)                # string literals
    text = re.sub(r"\{[^}]*\}", "", text)                          # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)                         # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word, after = m.group(0), text[m.end():].lstrip()[:1]
        if after == "(" or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def exported_names(exposition: str) -> set[str]:
    """Every series name a /metrics text exports (a family without samples yet counts by its type's suffixes)."""
    out: set[str] = set()
    for fam in text_string_to_metric_families(exposition):
        out.update(s.name for s in fam.samples)
        out.update(fam.name + suffix for suffix in SUFFIXES.get(fam.type, ("",)))
    return out


def test_metric_names_are_read_from_promql() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, stage) (rate(tryon_duration_seconds_bucket{stage!="x"}[5m])))'
            ' + on (instance) group_left (name) node2_info')
    assert metric_names(expr) == {"tryon_duration_seconds_bucket", "node2_info"}


def test_scrape_config_names_both_jobs_the_dashboard_selects() -> None:
    cfg = yaml.safe_load(SCRAPE_CONFIG.read_text())
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert jobs["node1"]["scheme"] == "https" and jobs["node2"]["metrics_path"] == "/metrics"
    env = json.loads((ROOT / "env_config.json").read_text())
    assert all(t.endswith(f":{env['node1']['https_port']}") for t in jobs["node1"]["static_configs"][0]["targets"])
    assert all(t.endswith(f":{env['node2']['health_port']}") for t in jobs["node2"]["static_configs"][0]["targets"])
    selected = {m for q in dashboard_queries() for m in re.findall(r'job="([^"]+)"', q)}
    assert selected <= set(jobs)
    assert any(r.get("target_label") == "job" for r in jobs["kubernetes-pods"]["relabel_configs"])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalDeployment]:
    dep = LocalDeployment(tmp_path_factory.mktemp("dashboard"),
                          overrides={"limits": {"rate_limit_per_min": 100000, "request_timeout_s": REQUEST_TIMEOUT_S}})
    n2 = dep.config["node2"]
    dep.config["pool"] = {"members": [{"name": "local", "host": n2["host"], "gvirtus_port": n2["gvirtus_port"],
                                       "gateway_port": n2["gateway_port"], "health_port": n2["health_port"]}]}
    dep.config_path.write_text(json.dumps(dep.config, indent=2))
    with dep:
        yield dep


def _scrape(url: str, cafile: str | None = None) -> str:
    import ssl

    ctx = ssl.create_default_context(cafile=cafile) if url.startswith("https") else None
    with urllib.request.urlopen(url, timeout=30, context=ctx) as resp:  # noqa: S310 (our own deployment)
        return str(resp.read().decode())


def test_every_dashboard_metric_is_exported_by_a_running_deployment(deployment: LocalDeployment) -> None:
    client = WebClient(deployment.url, cafile=deployment.cafile, timeout_s=REQUEST_TIMEOUT_S + 30)
    deadline = time.monotonic() + READY_WAIT_S     # as a load balancer does: traffic once /readyz says so
    while client.request("GET", "/readyz")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    garment = client.garments()[0]["id"]
    out: dict[str, Any] = client.tryon(astronaut_jpeg(), garment)          # a real try-on through the pool
    assert out["transport"] == "tcp"
    with pytest.raises(ApiError) as err:                                   # and a refused one: errors by code
        client.tryon(b"not an image", garment)
    assert err.value.status in (400, 415)
    node1 = _scrape(deployment.url.rstrip("/") + "/metrics", deployment.cafile)
    n2 = deployment.config["node2"]
    node2 = _scrape(f"http://{n2['host']}:{n2['health_port']}/metrics")
    exported = exported_names(node1) | exported_names(node2)
    wanted = {name for q in dashboard_queries() for name in metric_names(q)}
    assert len(wanted) >= 20
    missing = sorted(wanted - exported)
    assert missing == [], f"dashboard queries name metrics nobody exports: {missing}"
    assert 'pool_requests_routed_total{member="local"} 1.0' in node1
    assert re.search(r'node2_info\{name="[^"]+"\} 1\.0', node2)
