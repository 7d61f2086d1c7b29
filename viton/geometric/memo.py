"""The warp's reusable work, kept between try-ons of the same garment (a live mirror's frames).

Two steps of the warp depend on few inputs and cost most of it (measured at 640x480: 5.6 ms to
prepare the garment, 2.9 ms to fit the spline and sample the garment, of a 9.4 ms warp):
    prepared   the garment premultiplied, shrunk to the output's scale and its edge softened:
               depends on the garment and that scale only. The scale is snapped to the nearest step of
               2^(1/16) (within 2.2 %), so a shopper who moves a little keeps the same prepared garment.
    sampled    the garment sampled through the spline onto the work box: depends on the exact
               landmark pairs, the similarity and the box. The box is snapped outward to BOX_SNAP_PX,
               so a parse map that breathes by a pixel keeps it; node 1's live path holds the
               keypoints still (a dead band) while the shopper is still, so a still shopper hits.

Both are computed the same way whether or not they are kept (the snapping is always applied), so a
kept result is bit for bit the one that would be computed: memoisation never changes a pixel
(tests/viton/test_warp_memo.py).

Results are kept only for a garment with a `key` (its content id, which node 2's gateway verified
against the garment's bytes when it cached it); a garment without one is always computed. The key also
holds the garment's landmarks and a sample of its pixels (every 7th row and column), so a garment sent
under another's id is not mistaken for it. Kept arrays are read-only; callers get copies of the crop.
"""

from __future__ import annotations

import collections
import hashlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from viton.engine import GarmentData
from viton.geometric import warp

MAX_GARMENT_OVERSAMPLING = 1.5  # garment px per output px kept before downscaling (anti-aliasing)
GARMENT_EDGE_SIGMA_PX = 0.6     # output px: Gaussian ramp of the garment's own outline
MINIFIED_EDGE_SIGMA_PX = 0.5   # garment px (about 1/3 output px): a shrunk garment's edge ramp widened
SCALE_STEPS_PER_OCTAVE = 16     # the prepared garment's scale is snapped to the nearest 2^(k/16)
BOX_SNAP_PX = 16                # the sampled box is snapped outward to multiples of this
PREPARED_ITEMS = 8              # prepared garments kept (garment x scale)
SAMPLED_ITEMS = 8               # sampled warps kept (garment x pose x box)
FINGERPRINT_STRIDE = 7          # the garment's pixels sampled into its key beside its content id


@dataclass
class MemoStats:
    """Hits and misses per kept step (for the service's health document)."""

    prepared_hits: int = 0
    prepared_misses: int = 0
    sampled_hits: int = 0
    sampled_misses: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def snapped_factor(scale: float) -> float:
    """The garment's resampling factor for an output `scale` (garment -> output px), snapped to the
    nearest step of 2^(1/16): MAX_GARMENT_OVERSAMPLING garment px per output px, within 2.2 %."""
    factor = max(scale, 1e-6) * MAX_GARMENT_OVERSAMPLING
    return float(2.0 ** (round(math.log2(factor) * SCALE_STEPS_PER_OCTAVE) / SCALE_STEPS_PER_OCTAVE))


def snap_box(box: tuple[int, int, int, int], shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) grown outward to multiples of BOX_SNAP_PX, clipped to shape = (H, W)."""
    x0, y0, x1, y1 = box
    s = BOX_SNAP_PX
    h, w = shape
    return (x0 // s * s, y0 // s * s, min(-(-x1 // s) * s, w), min(-(-y1 // s) * s, h))


def prepare_garment(garment: GarmentData, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(h', w', 4) uint8 premultiplied RGBA garment, shrunk when it would be minified a lot
    (snapped_factor), and its (N, 2) float64 landmarks in the shrunk garment's pixels."""
    img, mask, lm = garment.image, garment.mask, garment.landmarks.astype(np.float64)
    factor = snapped_factor(scale)
    if factor < 1.0:
        h, w = mask.shape
        size = (max(int(round(w * factor)), 8), max(int(round(h * factor)), 8))
        fx, fy = size[0] / w, size[1] / h
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_AREA)
        lm = np.stack([(lm[:, 0] + 0.5) * fx - 0.5, (lm[:, 1] + 0.5) * fy - 0.5], axis=1)
    if factor >= 1.0:
        # a binary edge sampled about 1:1 comes out as a hard step: give it a ramp of about one
        # output pixel, so the garment's own outline is anti-aliased (no seam against old clothes)
        sigma = GARMENT_EDGE_SIGMA_PX * MAX_GARMENT_OVERSAMPLING / factor   # the snapped scale's
        binary = np.where(mask >= 128, 255, 0).astype(np.uint8)
        alpha = np.asarray(cv2.GaussianBlur(binary, (0, 0), sigmaX=sigma, sigmaY=sigma), dtype=np.uint8)
    else:   # the area filter's ramp is one garment px, under one output px: widen it as above
        alpha = np.asarray(cv2.GaussianBlur(mask, (0, 0), sigmaX=MINIFIED_EDGE_SIGMA_PX,
                                            sigmaY=MINIFIED_EDGE_SIGMA_PX), dtype=np.uint8)
    premultiplied = cv2.multiply(img, cv2.merge([alpha, alpha, alpha]), scale=1.0 / 255.0)
    return cv2.merge([premultiplied, alpha]), lm


def _fingerprint(a: np.ndarray) -> np.ndarray:
    """Every FINGERPRINT_STRIDE-th row and column of a garment array: with the content id, a mislabelled
    garment (same id, other pixels: a caller's mistake) is told apart in ~0.1 ms instead of hashing it all."""
    return a[::FINGERPRINT_STRIDE, ::FINGERPRINT_STRIDE]


def _digest(*parts: Any) -> str:
    """A key over arrays (dtype, shape, bytes) and plain values."""
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(repr((p.dtype.str, p.shape)).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(repr(p).encode())
    return h.hexdigest()


class WarpMemo:
    """Thread-safe LRUs of prepared garments and sampled warps (see the module's docstring)."""

    def __init__(self, prepared_items: int = PREPARED_ITEMS, sampled_items: int = SAMPLED_ITEMS) -> None:
        self._sizes = {"prepared": prepared_items, "sampled": sampled_items}
        self._kept: dict[str, collections.OrderedDict[str, Any]] = {k: collections.OrderedDict() for k in self._sizes}
        self._lock = threading.Lock()
        self.stats = MemoStats()

    def _get_or_make(self, table: str, key: str | None, make: Callable[[], Any]) -> Any:
        if key is None:
            return make()
        with self._lock:
            kept = self._kept[table].get(key)
            if kept is not None:
                self._kept[table].move_to_end(key)
                setattr(self.stats, f"{table}_hits", getattr(self.stats, f"{table}_hits") + 1)
                return kept
        value = make()
        for a in value if isinstance(value, tuple) else (value,):
            if isinstance(a, np.ndarray):
                a.flags.writeable = False
        with self._lock:
            setattr(self.stats, f"{table}_misses", getattr(self.stats, f"{table}_misses") + 1)
            self._kept[table][key] = value
            while len(self._kept[table]) > self._sizes[table]:
                self._kept[table].popitem(last=False)
        return value

    def prepared(self, garment: GarmentData, scale: float) -> tuple[np.ndarray, np.ndarray, str | None]:
        """prepare_garment(garment, scale) and the key of the result (None: not kept)."""
        key = (_digest(garment.key, garment.landmarks, _fingerprint(garment.image), _fingerprint(garment.mask),
                       snapped_factor(scale)) if garment.key else None)
        rgba, lm = self._get_or_make("prepared", key, lambda: prepare_garment(garment, scale))
        return rgba, lm, key

    def sampled(self, prepared: tuple[np.ndarray, str | None], g_pts: np.ndarray, b_pts: np.ndarray,
                sim: warp.Similarity, *, box: tuple[int, int, int, int], shape: tuple[int, int],
                sleeve_lm: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The prepared garment (rgba, its key) sampled through the spline g_pts -> b_pts over `box`
        (computed over snap_box(box, shape) and cropped).

        Returns: sampled (h, w, 4) uint8 premultiplied RGBA and sleeve (h, w) float32 [0, 1] for the
        (h, w) of `box` (copies: the caller owns them).
        """
        rgba, prepared_key = prepared
        big = snap_box(box, shape)

        def make() -> tuple[np.ndarray, np.ndarray]:
            map_x, map_y, sleeve = warp.garment_sampling_maps(g_pts, b_pts, sim, big, sleeve_lm)
            return warp.remap_garment(rgba, map_x, map_y), sleeve

        key = (None if prepared_key is None else
               _digest(prepared_key, g_pts, b_pts, sim.a, sim.b, big,
                       np.zeros(0) if sleeve_lm is None else sleeve_lm))
        sampled, sleeve = self._get_or_make("sampled", key, make)
        x0, y0, x1, y1 = box
        crop = (slice(y0 - big[1], y1 - big[1]), slice(x0 - big[0], x1 - big[0]))
        return sampled[crop].copy(), sleeve[crop].copy()
