"""DNS discovery against a real dnsmasq, and the registration rules (token, body, heartbeats)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node1.tryon.discovery import DnsDiscovery, Registry, parse_registration
from node1.tryon.errors import BadRequest, NotAuthorized
from node1.tryon.pool import Pool
from tests.pool.cluster import DNS_NAME, Dnsmasq

PORTS = {"gvirtus_port": 18888, "gateway_port": 19555, "health_port": 19556, "gvirtus_data_port": 0}


@pytest.fixture
def dnsmasq(tmp_path: Path) -> Iterator[Dnsmasq]:
    if shutil.which("dnsmasq") is None:
        pytest.skip("needs Debian's dnsmasq (scripts/bootstrap.sh installs dnsmasq-base)")
    try:
        d = Dnsmasq(tmp_path)
    except RuntimeError as exc:
        pytest.skip(f"dnsmasq does not start here: {exc}")
    yield d
    d.close()


def _names(pool: Pool) -> set[str]:
    return {m.name for m in pool.members()}


def test_dns_members_follow_the_name(dnsmasq: Dnsmasq) -> None:
    pool = Pool(lambda m: None, health_interval_s=3600.0)
    dnsmasq.set_addresses(["127.0.0.2", "127.0.0.3"])
    dns = DnsDiscovery(pool, DNS_NAME, dnsmasq.resolver, interval_s=0.2, ports=PORTS)
    try:
        deadline = time.monotonic() + 10
        while dns.resolve() != ["127.0.0.2", "127.0.0.3"] and time.monotonic() < deadline:
            time.sleep(0.1)   # dnsmasq rereads its hosts file on SIGHUP
        dns.start()
        assert _names(pool) == {f"{DNS_NAME}-127.0.0.2", f"{DNS_NAME}-127.0.0.3"}
        m = pool.get(f"{DNS_NAME}-127.0.0.3")
        assert m is not None and m.source == "dns" and m.address.gateway_port == 19555
        dnsmasq.set_addresses(["127.0.0.3", "127.0.0.4"])        # re-resolved by the loop
        deadline = time.monotonic() + 10
        while _names(pool) != {f"{DNS_NAME}-127.0.0.3", f"{DNS_NAME}-127.0.0.4"} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _names(pool) == {f"{DNS_NAME}-127.0.0.3", f"{DNS_NAME}-127.0.0.4"}
        assert pool.removed_total == 1
        dnsmasq.close()                                              # the resolver stops answering
        dns.sync()
        assert _names(pool) == {f"{DNS_NAME}-127.0.0.3", f"{DNS_NAME}-127.0.0.4"}   # unchanged
        assert dns.last_error is not None
    finally:
        dns.close()
        pool.close()


def test_wrong_or_missing_token_is_refused_and_counted() -> None:
    pool = Pool(lambda m: None)
    reg = Registry(pool, "right-token", heartbeat_timeout_s=5.0)
    try:
        with pytest.raises(NotAuthorized, match="registration token"):
            reg.check_token("wrong-token", "10.0.0.9")
        with pytest.raises(NotAuthorized):
            reg.check_token(None, "10.0.0.9")
        reg.check_token("right-token", "10.0.0.9")
        assert pool.registrations_refused == 2
    finally:
        reg.close()


def test_a_member_that_stops_heartbeating_is_dropped() -> None:
    pool = Pool(lambda m: None, health_interval_s=3600.0)
    reg = Registry(pool, "t", heartbeat_timeout_s=0.6)
    try:
        body = {"name": "gpu-a", "host": "127.0.0.1", **PORTS, "device": "cuda:0", "gpu_memory_total_mb": 81559,
                "max_jobs": 4}
        reply = reg.register(body, "127.0.0.1")
        assert reply["name"] == "gpu-a" and reply["heartbeat_interval_s"] > 0
        m = pool.get("gpu-a")
        assert m is not None and m.source == "registered" and m.info["max_jobs"] == 4
        for _ in range(4):
            time.sleep(0.25)
            assert reg.heartbeat("gpu-a")       # kept while it beats
        assert pool.get("gpu-a") is not None
        deadline = time.monotonic() + 5
        while pool.get("gpu-a") is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.get("gpu-a") is None and reg.dropped == 1
        assert not reg.heartbeat("gpu-a")       # it must register again
    finally:
        reg.close()
        pool.close()


@pytest.mark.parametrize(("field", "value", "match"), [
    ("name", "bad name!", "name = 'bad name!'"),
    ("gateway_port", 70000, "gateway_port = 70000"),
    ("health_port", "80", "health_port = '80'"),
    ("max_jobs", -1, "max_jobs = -1"),
    ("gpu_memory_total_mb", True, "gpu_memory_total_mb = True"),
])
def test_registration_body_errors_name_the_field(field: str, value: object, match: str) -> None:
    body = {"name": "gpu-a", **PORTS, field: value}
    with pytest.raises(BadRequest, match=match.replace("(", r"\(")):
        parse_registration(body, "10.0.0.9")


def test_registration_host_defaults_to_the_peer() -> None:
    reg = parse_registration({"name": "gpu-a", **PORTS}, "10.0.0.9")
    assert reg.address.host == "10.0.0.9" and reg.info["max_jobs"] == 0
