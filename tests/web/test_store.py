"""node1.web.store.TTLStore: entries expire after the TTL; memory stays bounded."""

from __future__ import annotations

import pytest

from node1.web.store import TTLStore


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_entries_expire_after_ttl():
    clock = FakeClock()
    s: TTLStore[str] = TTLStore(ttl_s=60, clock=clock)
    s.put("a", "A", nbytes=10)
    clock.t += 59.9
    assert s.get("a") == "A"
    clock.t += 0.2
    assert s.get("a") is None
    assert len(s) == 0 and s.nbytes == 0 and s.expired == 1


def test_resize_touches_ttl_and_accounts_bytes():
    clock = FakeClock()
    s: TTLStore[str] = TTLStore(ttl_s=10, clock=clock)
    s.put("a", "A", nbytes=100)
    clock.t += 8
    s.resize("a", 40)
    assert s.nbytes == 40
    clock.t += 8
    assert s.get("a") == "A"          # TTL restarted by resize
    clock.t += 3
    assert s.get("a") is None


def test_sweep_drops_every_expired_entry():
    clock = FakeClock()
    s: TTLStore[int] = TTLStore(ttl_s=5, clock=clock)
    for i in range(10):
        s.put(str(i), i, nbytes=1)
    clock.t += 5
    assert s.sweep() == 10 and s.nbytes == 0


def test_bounded_by_items_and_bytes_oldest_first():
    s: TTLStore[int] = TTLStore(ttl_s=100, max_items=3, max_bytes=1000, clock=FakeClock())
    for i in range(5):
        s.put(str(i), i, nbytes=10)
    assert [s.get(str(i)) for i in range(5)] == [None, None, 2, 3, 4]
    s.put("big", 99, nbytes=990)
    assert s.nbytes <= 1000 and s.get("big") == 99 and s.evicted >= 3


def test_bad_arguments():
    with pytest.raises(ValueError, match="ttl_s > 0"):
        TTLStore(ttl_s=0)
