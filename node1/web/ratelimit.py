"""Per-client rate limit: at most N requests per client in any sliding 60 s window.

Memory is bounded: at most N timestamps per client and MAX_CLIENTS clients (the least recently
seen are forgotten first). Clients are identified by their address as the server sees it
(node 1 is not meant to sit behind a proxy; see docs/web.md).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from node1.tryon import RateLimited

WINDOW_S = 60.0
MAX_CLIENTS = 10_000


class RateLimiter:
    def __init__(self, per_min: int, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = MAX_CLIENTS) -> None:
        if per_min < 1:
            raise ValueError(f"rate limit must be >= 1 request per minute, got {per_min}")
        self.per_min = per_min
        self._clock = clock
        self._max_clients = max_clients
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, client: str) -> None:
        """Count one request from `client`; raise RateLimited when over the limit."""
        now = self._clock()
        with self._lock:
            times = self._seen.pop(client, None) or deque()
            while times and times[0] <= now - WINDOW_S:
                times.popleft()
            self._seen[client] = times
            while len(self._seen) > self._max_clients:
                self._seen.popitem(last=False)
            if len(times) >= self.per_min:
                retry = max(times[0] + WINDOW_S - now, 0.1)
                raise RateLimited(f"more than {self.per_min} requests per minute from {client}; "
                                  f"retry in {retry:.0f} s", retry_after_s=retry)
            times.append(now)

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)
