"""Node 2's garment cache: prepared garments by content hash, bounded LRU (items and bytes)."""

from __future__ import annotations

import collections
import hashlib
import threading
from dataclasses import dataclass

import numpy as np

DEFAULT_MAX_ITEMS = 256
DEFAULT_MAX_BYTES = 512 * 1024 * 1024


class GarmentRejected(ValueError):  # noqa: N818 (names say what went wrong)
    """A garment frame's tensors do not hash to its garment_id."""


@dataclass(frozen=True)
class CachedGarment:
    """image (h,w,3) uint8 RGB; mask (h,w) uint8 255 = cloth; landmarks (9,2) float32 (x, y) pixels."""

    garment_id: str
    kind: str
    image: np.ndarray
    mask: np.ndarray
    landmarks: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.image.nbytes + self.mask.nbytes + self.landmarks.nbytes)


def content_id(image: np.ndarray, mask: np.ndarray) -> str:
    """sha256 over shapes and bytes of image and mask (the same rule as garments.types.content_id;
    node 2 does not import the garments package)."""
    h = hashlib.sha256()
    for a in (image, mask):
        h.update(repr((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class GarmentCache:
    """Thread-safe LRU. `put` verifies the content hash and copies the tensors (the received
    buffers belong to the transport); `get` refreshes recency."""

    def __init__(self, max_items: int = DEFAULT_MAX_ITEMS, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.max_items, self.max_bytes = max_items, max_bytes
        self._items: collections.OrderedDict[str, CachedGarment] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = 0

    def put(self, garment_id: str, kind: str, image: np.ndarray, mask: np.ndarray,
            landmarks: np.ndarray) -> CachedGarment:
        actual = content_id(image, mask)
        if actual != garment_id:
            raise GarmentRejected(f"garment_id {garment_id} does not match its content (sha256 {actual}); "
                                  "send the id computed by garments.content_id")
        item = CachedGarment(garment_id, kind, image.copy(), mask.copy(), landmarks.copy())
        if item.nbytes > self.max_bytes:
            raise GarmentRejected(f"garment {garment_id} is {item.nbytes} bytes; the cache holds at most "
                                  f"{self.max_bytes}")
        with self._lock:
            old = self._items.pop(garment_id, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._items[garment_id] = item
            self._bytes += item.nbytes
            while len(self._items) > self.max_items or self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= evicted.nbytes
                self.evictions += 1
        return item

    def get(self, garment_id: str) -> CachedGarment | None:
        with self._lock:
            item = self._items.get(garment_id)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(garment_id)
            self.hits += 1
            return item

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"items": len(self._items), "bytes": self._bytes, "hits": self.hits,
                    "misses": self.misses, "evictions": self.evictions}
