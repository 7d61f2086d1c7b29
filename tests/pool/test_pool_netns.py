"""Three real node 2s (gvirtus backend + VITON service + gateway each, `start_application.sh --role node2`)
in three network namespaces made here, node 1 (`--role node1`) in the root namespace: one member from
the config list, one from DNS (a dnsmasq started here), one registered with the token (--register).

One cluster for the module (starting it is the slow part); tests run in order and leave it whole.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from node1.cli.http_client import ApiError, WebClient
from tests.faults.deployment import astronaut_jpeg
from tests.pool.cluster import REGISTRATION_TOKEN, PoolCluster, netns_unavailable

pytestmark = pytest.mark.needs_root

REQUEST_TIMEOUT_S = 60          # node 1's limits.request_timeout_s: a busy 2-core machine runs 10 processes
EJECT_WITHIN_S = 3.0            # the bound from kill -9 to ejection
SOURCES = ("config", "dns", "registered")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolCluster]:
    why = netns_unavailable()
    if why:
        pytest.skip(why)
    with PoolCluster(tmp_path_factory.mktemp("pool"), n=3, sources=SOURCES,
                     overrides={"limits": {"request_timeout_s": REQUEST_TIMEOUT_S, "rate_limit_per_min": 100000}},
                     heartbeat_timeout_s=3.0) as c:
        yield c


@pytest.fixture(scope="module")
def photo() -> bytes:
    return astronaut_jpeg()


@pytest.fixture(scope="module")
def garment(cluster: PoolCluster) -> str:
    assert cluster.client is not None
    return cluster.client.garments()[0]["id"]


def _routed(cluster: PoolCluster) -> dict[str, int]:
    return {m["name"]: int(m["routed"]) for m in cluster.nodes()["members"]}


def _gateway_results(cluster: PoolCluster) -> dict[str, float]:
    """Try-on results each node 2's gateway answered, from its own /metrics (gateway_requests_total)."""
    out: dict[str, float] = {}
    port = cluster.base["node2"]["health_port"]
    for i, net in enumerate(cluster.nets):
        with urllib.request.urlopen(f"http://{net.ns_ip}:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        out[cluster.member_name(i)] = sum(float(line.split()[-1]) for line in text.splitlines()
                                          if line.startswith("gateway_requests_total{")
                                          and 'kind="tryon"' in line and 'outcome="result"' in line)
    return out


class Load:
    """`clients` threads posting try-ons until `total` are done (or stop()); every outcome recorded."""

    def __init__(self, cluster: PoolCluster, photo: bytes, garment: str, clients: int, total: int) -> None:
        assert cluster.client is not None
        self.client: WebClient = cluster.client
        self.photo, self.garment, self.total = photo, garment, total
        self.ok: list[tuple[float, float]] = []          # (finished at, latency s)
        self.failed: list[str] = []
        self._lock = threading.Lock()
        self._started = 0
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if self._started >= self.total:
                    return
                self._started += 1
            t0 = time.monotonic()
            try:
                self.client.tryon(self.photo, self.garment)
                with self._lock:
                    self.ok.append((time.monotonic(), time.monotonic() - t0))
            except Exception as exc:  # noqa: BLE001 - every failure is a lost request, recorded
                with self._lock:
                    self.failed.append(f"{type(exc).__name__}: {exc}")

    def join(self, timeout_s: float) -> None:
        for t in self.threads:
            t.join(timeout_s)
        self._stop.set()


def test_all_three_sources_joined(cluster: PoolCluster) -> None:
    members = {m["name"]: m for m in cluster.nodes()["members"]}
    assert sorted(m["source"] for m in members.values()) == sorted(SOURCES)
    for i, source in enumerate(SOURCES):
        m = members[cluster.member_name(i)]
        assert m["source"] == source and m["eligible"], m
        assert m["gvirtus_sessions"] is not None and m["status"] == "ok"


def test_sixty_tryons_from_four_clients_are_shared(cluster: PoolCluster, photo: bytes, garment: str) -> None:
    before, gw_before = _routed(cluster), _gateway_results(cluster)
    load = Load(cluster, photo, garment, clients=4, total=60)
    load.join(timeout_s=600)
    assert load.failed == [] and len(load.ok) == 60          # 0 lost
    after, gw_after = _routed(cluster), _gateway_results(cluster)
    routed = {n: after[n] - before.get(n, 0) for n in after}
    served = {n: gw_after[n] - gw_before[n] for n in gw_after}   # counted by each node 2 itself
    assert sum(routed.values()) == 60, routed                 # no retries were needed
    assert sum(served.values()) == 60 and served == routed, (served, routed)
    for name, n in served.items():
        assert n / 60 >= 0.2, f"{name} served {n} of 60: {served}"


def test_kill9_of_one_member_under_load_loses_nothing(cluster: PoolCluster, photo: bytes, garment: str) -> None:
    victim = 0
    name = cluster.member_name(victim)
    load = Load(cluster, photo, garment, clients=4, total=40)
    deadline = time.monotonic() + 120
    while len(load.ok) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    t_kill = cluster.kill9(victim)
    cluster.wait(lambda doc: not (cluster.member(doc, victim) or {"eligible": False})["eligible"], 10,
                 f"{name} ejected")
    ejected_s = time.monotonic() - t_kill
    load.join(timeout_s=600)
    assert load.failed == [], load.failed                     # retried on the others: 0 lost
    assert len(load.ok) == 40
    doc = cluster.nodes()
    victim_view = cluster.member(doc, victim)
    assert victim_view is not None and victim_view["ejected"] and victim_view["ejections"] >= 1
    assert ejected_s <= EJECT_WITHIN_S, f"ejected {ejected_s:.2f} s after kill -9"
    cluster.restart(victim)
    cluster.wait(lambda d: bool((cluster.member(d, victim) or {}).get("eligible")), 120, f"{name} rejoins")
    before = _routed(cluster)[name]
    load = Load(cluster, photo, garment, clients=3, total=9)
    load.join(timeout_s=300)
    assert load.failed == [] and _routed(cluster)[name] > before   # it serves again


def test_registered_member_that_stops_heartbeating_is_dropped(cluster: PoolCluster) -> None:
    reg = SOURCES.index("registered")
    name = cluster.member_name(reg)
    cluster.kill9(reg)
    cluster.wait(lambda doc: cluster.member(doc, reg) is None, 15, f"{name} dropped (no heartbeat for 3 s)")
    cluster.restart(reg)                                       # registers again on start
    cluster.wait(lambda d: bool((cluster.member(d, reg) or {}).get("eligible")), 120, f"{name} registered again")


def test_wrong_registration_token_is_refused_and_counted(cluster: PoolCluster) -> None:
    assert cluster.client is not None
    before = cluster.nodes()["registrations_refused"]
    body = json.dumps({"name": "intruder", "gvirtus_port": 1, "gateway_port": 2, "health_port": 3}).encode()
    status, _, reply = cluster.client.request("POST", "/api/nodes/register", body,
                                              {"Content-Type": "application/json",
                                               "Authorization": "Bearer not-" + REGISTRATION_TOKEN})
    assert status == 401 and json.loads(reply)["error"]["code"] == "unauthorized"
    doc = cluster.nodes()
    assert doc["registrations_refused"] == before + 1
    assert all(m["name"] != "intruder" for m in doc["members"])
    _, _, metrics = cluster.client.request("GET", "/metrics")
    assert f"pool_registrations_refused_total {before + 1}.0" in metrics.decode()


def test_dns_member_leaves_when_the_name_stops_resolving_to_it(cluster: PoolCluster) -> None:
    dns_i = SOURCES.index("dns")
    assert cluster.dns is not None
    cluster.dns.set_addresses([])
    cluster.wait(lambda doc: cluster.member(doc, dns_i) is None, 15, "the DNS member removed")
    cluster.dns.set_addresses([cluster.nets[dns_i].ns_ip])
    cluster.wait(lambda d: bool((cluster.member(d, dns_i) or {}).get("eligible")), 30, "the DNS member back")


def test_all_members_down_is_a_typed_503_then_recovery(cluster: PoolCluster, photo: bytes, garment: str) -> None:
    assert cluster.client is not None
    for i in range(cluster.n):
        cluster.kill9(i)
    cluster.wait(lambda doc: not any(m["eligible"] for m in doc["members"]), 10, "every member ejected")
    t0 = time.monotonic()
    with pytest.raises(ApiError) as err:
        cluster.client.tryon(photo, garment)
    assert time.monotonic() - t0 < REQUEST_TIMEOUT_S
    assert err.value.status == 503 and err.value.code == "node2_unavailable"
    assert "no node 2 can take the try-on now" in err.value.message
    assert cluster.member_name(0) in err.value.message
    cluster.restart(0)
    cluster.wait(lambda d: bool((cluster.member(d, 0) or {}).get("eligible")), 120, "member 0 back")
    out: dict[str, Any] = cluster.client.tryon(photo, garment)
    assert out["transport"] == "tcp"


def test_nodes_view_needs_the_operator_token(cluster: PoolCluster) -> None:
    assert cluster.client is not None
    status, _, _ = cluster.client.request("GET", "/api/nodes")
    assert status == 401
