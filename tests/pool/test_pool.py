"""Pool membership, health, routing and breakers against real HTTP health endpoints (no namespaces)."""

from __future__ import annotations

import collections

import pytest

from node1.tryon.errors import Node2Unavailable
from node1.tryon.pool import NoMemberAvailable, Pool
from tests.pool.conftest import Node2Health


def _shares(pool: Pool, n: int) -> collections.Counter[str]:
    """How `n` requests, each chosen and tracked one after another, fall on the members."""
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(n):
        m = pool.choose()
        with pool.track(m):
            counts[m.name] += 1
    return counts


def test_equal_members_share_requests_evenly(pool: Pool) -> None:
    assert _shares(pool, 30) == {"n0": 10, "n1": 10, "n2": 10}


def test_least_outstanding_work_wins(pool: Pool) -> None:
    busy = pool.get("n0")
    assert busy is not None
    with pool.track(busy), pool.track(busy):
        picks = set()
        for _ in range(6):
            m = pool.choose()
            with pool.track(m):
                picks.add(m.name)
                assert m.name != "n0"
    assert picks == {"n1", "n2"}


def test_free_gpu_memory_weights_the_choice(pool: Pool, healths: list[Node2Health]) -> None:
    healths[0].doc["gpu"] = {"memory_total_mb": 8000, "memory_used_mb": 0}       # 8000 MB free
    healths[1].doc["gpu"] = {"memory_total_mb": 8000, "memory_used_mb": 6000}    # 2000 MB free
    healths[2].doc["status"] = "degraded"
    for m in pool.members():
        pool.probe_now(m)
    big, small = pool.get("n0"), pool.get("n1")
    assert big is not None and small is not None
    with pool.track(big):  # n0: (1+1)/1.0 = 2 beats n1: (0+1)/0.25 = 4
        assert pool.choose().name == "n0"
    with pool.track(big), pool.track(big), pool.track(big), pool.track(big):  # n0: 5 > n1: 4
        assert pool.choose().name == "n1"


def test_dead_member_is_ejected_at_once_and_rejoins_when_healthy(pool: Pool, healths: list[Node2Health]) -> None:
    healths[1].stop()
    n1 = pool.get("n1")
    assert n1 is not None
    pool.probe_now(n1)          # connection refused: definite
    assert n1.ejected and not n1.healthy and n1.ejections == 1
    assert "refused" in str(n1.last_error).lower()
    assert all(pool.choose().name != "n1" for _ in range(9))
    healths[1].start()
    pool.probe_now(n1)
    assert n1.up and not n1.ejected
    assert "n1" in {pool.choose().name for _ in range(3)}


def test_degraded_node2_is_not_routed_to(pool: Pool, healths: list[Node2Health]) -> None:
    healths[2].doc["status"] = "degraded"
    n2 = pool.get("n2")
    assert n2 is not None
    pool.probe_now(n2)
    assert n2.ejected and "degraded" in str(n2.last_error)
    assert all(pool.choose().name != "n2" for _ in range(6))


def test_open_breaker_is_skipped_and_all_down_names_each_reason(pool: Pool, healths: list[Node2Health]) -> None:
    n0 = pool.get("n0")
    assert n0 is not None
    for _ in range(3):
        pool.record_failure(n0, TimeoutError("slow"), eject=False)
    assert n0.breaker.state == "open"
    assert all(pool.choose().name != "n0" for _ in range(6))
    healths[1].stop()
    healths[2].doc["status"] = "degraded"
    for name in ("n1", "n2"):
        m = pool.get(name)
        assert m is not None
        pool.probe_now(m)
    with pytest.raises(NoMemberAvailable) as err:
        pool.choose()
    assert isinstance(err.value, Node2Unavailable)   # the web app's typed 503
    text = str(err.value)
    assert "n0: breaker open after 3 failures" in text and "n1: ejected" in text and "'degraded'" in text


def test_healthy_probe_gives_an_open_breaker_one_trial(pool: Pool) -> None:
    n0 = pool.get("n0")
    assert n0 is not None
    for _ in range(3):
        pool.record_failure(n0, ConnectionError("reset"), eject=True)
    assert n0.breaker.state == "open" and n0.ejected
    pool.probe_now(n0)
    assert n0.breaker.state == "half_open" and n0.up


def test_empty_pool_says_how_to_add_members() -> None:
    p = Pool(lambda m: None)
    with pytest.raises(NoMemberAvailable, match="pool.members"):
        p.choose()


def test_snapshot_names_source_load_breaker_and_error(pool: Pool, healths: list[Node2Health]) -> None:
    healths[0].stop()
    n0 = pool.get("n0")
    assert n0 is not None
    pool.probe_now(n0)
    view = {m["name"]: m for m in pool.snapshot()}
    assert set(view) == {"n0", "n1", "n2"}
    assert view["n0"]["eligible"] is False and view["n0"]["source"] == "config"
    assert view["n1"]["eligible"] is True and view["n1"]["breaker"] == "closed"
    assert view["n1"]["gpu"]["memory_total_mb"] == 8000 and view["n1"]["gvirtus_sessions"] == 1
    assert "health probe" in view["n0"]["last_error"]


def test_rejoining_member_drops_its_stale_sessions_first(healths: list[Node2Health]) -> None:
    class Conn:
        resets = 0

        def reset(self) -> None:
            Conn.resets += 1
            assert not member.up            # before it takes requests again

    p = Pool(lambda m: Conn(), health_interval_s=3600.0)
    try:
        member = p.add("n0", "config", healths[0].address)
        p.probe_now(member)
        assert Conn.resets == 0             # an ok probe of an up member changes nothing
        healths[0].stop()
        p.probe_now(member)
        healths[0].start()
        p.probe_now(member)
        assert Conn.resets == 1 and member.up
    finally:
        p.close()


def test_cpu_backends_memory_is_no_preference(pool: Pool, healths: list[Node2Health]) -> None:
    healths[0].doc["gpu"] = {"device_type": "cpu", "memory_total_mb": 24000, "memory_used_mb": 1000}
    healths[1].doc["gpu"] = {"device_type": "cpu", "memory_total_mb": 24000, "memory_used_mb": 9000}
    healths[2].doc["gpu"] = {"device_type": "cpu", "memory_total_mb": 24000, "memory_used_mb": 5000}
    for m in pool.members():
        pool.probe_now(m)
    assert _shares(pool, 30) == {"n0": 10, "n1": 10, "n2": 10}
