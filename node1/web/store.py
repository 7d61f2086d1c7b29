"""An in-memory store whose entries expire: where shoppers' jobs and results live.

Nothing a shopper sends or receives is written to disk: photos and results exist only in this
process's memory, and only until their TTL (limits.result_ttl_s) passes. The store is also
bounded in entries and bytes; when full, the oldest entries are evicted first so a flood of
requests cannot grow memory without bound.

Expiry does not wait for a request: a sweeper thread (daemon, one per store) sleeps until the
earliest entry's expiry and drops it then (within SWEEP_SLACK_S), whether or not anything else
happens. The thread runs only while the store holds entries: it ends when the store becomes empty
(or is closed, or garbage-collected) and starts again with the next `put`, so an idle store costs
no thread.

Thread-safe. The clock is injectable so tests can move time forward; with an injected clock the
sweeper is off unless asked for (the test drives time and calls `sweep()`).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

V = TypeVar("V")

DEFAULT_MAX_ITEMS = 512
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
SWEEP_SLACK_S = 0.01        # the sweeper wakes this long after the earliest expiry (timer granularity)
SWEEP_MAX_WAIT_S = 1.0      # longest single sleep: bounds how long a garbage-collected store's thread lingers


@dataclass
class _Entry(Generic[V]):
    value: V
    expires_at: float
    nbytes: int


class TTLStore(Generic[V]):
    """A dict of id -> value where each value expires `ttl_s` seconds after it was put/touched.

    Args:
        ttl_s: lifetime of an entry, seconds.
        max_items: most entries kept; the oldest are evicted beyond this.
        max_bytes: most bytes kept (as declared with `put(..., nbytes=)`/`resize`).
        clock: monotonic seconds (default time.monotonic).
        background_sweep: drop expired entries on a timer thread (default: on with the real clock, off
            with an injected one).
    """

    def __init__(self, ttl_s: float, max_items: int = DEFAULT_MAX_ITEMS, max_bytes: int = DEFAULT_MAX_BYTES,
                 clock: Callable[[], float] = time.monotonic, background_sweep: bool | None = None) -> None:
        if ttl_s <= 0 or max_items < 1 or max_bytes < 1:
            raise ValueError(f"TTLStore needs ttl_s > 0, max_items >= 1, max_bytes >= 1; got "
                             f"ttl_s={ttl_s}, max_items={max_items}, max_bytes={max_bytes}")
        self.ttl_s = float(ttl_s)
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._items: OrderedDict[str, _Entry[V]] = OrderedDict()
        self._bytes = 0
        self.evicted = 0
        self.expired = 0
        self._background = clock is time.monotonic if background_sweep is None else background_sweep
        self._sweeper: threading.Thread | None = None

    def put(self, key: str, value: V, nbytes: int = 0) -> None:
        """Store `value` under `key` for ttl_s seconds (replacing an existing entry)."""
        with self._lock:
            self._drop(key)
            self._items[key] = _Entry(value, self._clock() + self.ttl_s, nbytes)
            self._bytes += nbytes
            self._sweep_locked()
            self._evict_locked(keep=key)
            self._start_sweeper_locked()

    def get(self, key: str) -> V | None:
        """The value, or None when unknown or expired."""
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                return None
            if entry.expires_at <= self._clock():
                self._drop(key)
                self.expired += 1
                return None
            return entry.value

    def resize(self, key: str, nbytes: int, touch: bool = True) -> None:
        """Update the byte size of an entry (e.g. once its result arrived); `touch` restarts its TTL."""
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                return
            self._bytes += nbytes - entry.nbytes
            entry.nbytes = nbytes
            if touch:
                entry.expires_at = self._clock() + self.ttl_s
                self._items.move_to_end(key)
            self._evict_locked(keep=key)

    def pop(self, key: str) -> V | None:
        with self._lock:
            entry = self._items.get(key)
            self._drop(key)
            return None if entry is None else entry.value

    def sweep(self) -> int:
        """Drop expired entries now; returns how many."""
        with self._lock:
            return self._sweep_locked()

    def close(self) -> None:
        """Drop every entry now and stop the sweeper thread (joined). A later `put` starts it again."""
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self._wake.notify_all()
            thread = self._sweeper
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    @property
    def sweeper_running(self) -> bool:
        with self._lock:
            return self._sweeper is not None and self._sweeper.is_alive()

    def values(self) -> list[V]:
        """Live values (expired ones swept first)."""
        with self._lock:
            self._sweep_locked()
            return [e.value for e in self._items.values()]

    def __len__(self) -> int:
        with self._lock:
            self._sweep_locked()
            return len(self._items)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes

    def _drop(self, key: str) -> None:
        entry = self._items.pop(key, None)
        if entry is not None:
            self._bytes -= entry.nbytes

    def _sweep_locked(self) -> int:
        now = self._clock()
        dead = [k for k, e in self._items.items() if e.expires_at <= now]
        for k in dead:
            self._drop(k)
        self.expired += len(dead)
        return len(dead)

    def _start_sweeper_locked(self) -> None:
        if not self._background:
            return
        if self._sweeper is not None and self._sweeper.is_alive():
            return   # new entries expire after every existing one: the sleeping sweeper's plan still holds
        self._sweeper = threading.Thread(target=_sweep_until_empty, args=(weakref.ref(self), self._wake),
                                         name="ttlstore-sweeper", daemon=True)
        self._sweeper.start()

    def _next_sweep_in_locked(self) -> float | None:
        """Sweep now; seconds until the next expiry, or None when the sweeper should end."""
        self._sweep_locked()
        if not self._items:
            self._sweeper = None
            return None
        earliest = min(e.expires_at for e in self._items.values())
        return min(max(earliest - self._clock(), 0.0) + SWEEP_SLACK_S, SWEEP_MAX_WAIT_S)

    def _evict_locked(self, keep: str) -> None:
        while (len(self._items) > self.max_items or self._bytes > self.max_bytes) and len(self._items) > 1:
            oldest = next(iter(self._items))
            if oldest == keep:
                self._items.move_to_end(keep)
                oldest = next(iter(self._items))
            self._drop(oldest)
            self.evicted += 1


def _sweep_until_empty(ref: weakref.ref[TTLStore[Any]], wake: threading.Condition) -> None:
    """The sweeper thread: drop expired entries at each expiry; end when the store is empty (or closed) or gone.
    It holds the store only weakly between sweeps, so an abandoned store is still garbage-collected."""
    while True:
        with wake:
            store = ref()
            if store is None:
                return
            wait_s = store._next_sweep_in_locked()
            del store
            if wait_s is None:
                return
            wake.wait(wait_s)
