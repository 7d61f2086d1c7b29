"""node1.web.store.TTLStore: entries expire after the TTL (dropped by a timer, real time); memory stays bounded."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from node1.web.store import SWEEP_MAX_WAIT_S, TTLStore


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


# Expiry on a timer, with real time ----------------------------------------------------------------

SHORT_TTL_S = 0.3
TIMER_BOUND_S = 1.0         # the promise: dropped within 1 s of the TTL, with no request arriving
POLL_S = 0.01


def _sweepers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ttlstore-sweeper" and t.is_alive()]


@pytest.fixture(autouse=True)
def no_leaked_sweepers() -> Iterator[None]:
    """Every test ends with no sweeper thread left running (they end once their store is empty or gone)."""
    before = set(_sweepers())
    yield
    gc.collect()
    deadline = time.monotonic() + SWEEP_MAX_WAIT_S + 1.0
    while set(_sweepers()) - before and time.monotonic() < deadline:
        time.sleep(POLL_S)
    assert not set(_sweepers()) - before, "a TTLStore sweeper thread outlived its test"


def _wait_until_empty(s: TTLStore[Any], limit_s: float) -> float:
    """Seconds until the store's bytes reach 0, watched through `nbytes` (which never sweeps itself)."""
    start = time.monotonic()
    while s.nbytes and time.monotonic() - start < limit_s:
        time.sleep(POLL_S)
    return time.monotonic() - start


def test_expired_entries_are_dropped_by_the_timer_without_any_request():
    s: TTLStore[bytes] = TTLStore(ttl_s=SHORT_TTL_S)
    put_at = time.monotonic()
    s.put("photo", b"x" * 1000, nbytes=1000)
    s.put("result", b"y" * 500, nbytes=500)
    assert s.sweeper_running
    _wait_until_empty(s, SHORT_TTL_S + TIMER_BOUND_S + 1.0)
    gone_after = time.monotonic() - put_at
    assert s.nbytes == 0 and s.expired == 2, "nothing swept the expired entries"
    assert SHORT_TTL_S <= gone_after <= SHORT_TTL_S + TIMER_BOUND_S, gone_after
    assert list(s._items) == []               # dropped, not merely hidden
    deadline = time.monotonic() + TIMER_BOUND_S
    while s.sweeper_running and time.monotonic() < deadline:
        time.sleep(POLL_S)
    assert not s.sweeper_running              # an empty store keeps no thread


def test_each_entry_goes_at_its_own_expiry_and_a_touch_postpones_it():
    ttl = 1.0
    s: TTLStore[str] = TTLStore(ttl_s=ttl)
    t0 = time.monotonic()
    s.put("early", "E", nbytes=1)
    s.put("kept", "K", nbytes=10)
    time.sleep(ttl / 2)
    s.resize("kept", 20)                      # touched: expires ttl after now
    touched_at = time.monotonic()
    while s.nbytes != 20 and time.monotonic() - t0 < ttl + TIMER_BOUND_S:
        time.sleep(POLL_S)
    assert s.nbytes == 20, "the untouched entry was not dropped on time"
    assert time.monotonic() < touched_at + ttl, "the machine stalled past the touched entry's expiry"
    assert "kept" in s._items                 # still there: its TTL restarted
    _wait_until_empty(s, ttl + TIMER_BOUND_S)
    assert s.nbytes == 0 and time.monotonic() - touched_at <= ttl + TIMER_BOUND_S


def test_a_new_put_after_the_store_emptied_starts_the_timer_again():
    s: TTLStore[str] = TTLStore(ttl_s=SHORT_TTL_S)
    for _ in range(2):
        s.put("a", "A", nbytes=5)
        assert _wait_until_empty(s, SHORT_TTL_S + TIMER_BOUND_S) <= SHORT_TTL_S + TIMER_BOUND_S
        assert s.nbytes == 0


def test_close_drops_everything_and_joins_the_sweeper():
    s: TTLStore[str] = TTLStore(ttl_s=60)
    s.put("a", "A", nbytes=5)
    assert s.sweeper_running
    s.close()
    assert s.nbytes == 0 and s.get("a") is None and not s.sweeper_running


def test_an_abandoned_store_does_not_keep_its_thread():
    s: TTLStore[str] = TTLStore(ttl_s=60)
    s.put("a", "A", nbytes=5)
    thread = s._sweeper
    assert thread is not None and thread.is_alive()
    del s
    gc.collect()
    thread.join(timeout=SWEEP_MAX_WAIT_S + 1.0)
    assert not thread.is_alive()


def test_an_injected_clock_starts_no_thread():
    s: TTLStore[str] = TTLStore(ttl_s=SHORT_TTL_S, clock=FakeClock())
    s.put("a", "A", nbytes=5)
    assert not s.sweeper_running
