"""Node 1's try-on client: person tensors + a garment in, the gateway's reply Frame out.

Message contract (node 1 -> gateway):

    tryon    tensors person (H,W,3) uint8 RGB, parse (H,W) uint8 CIHP labels,
             keypoints (25,3) float32 BODY_25 (x, y, confidence) pixels,
             pose_render (H,W,3) uint8, optional person_mask (H,W) float32 in [0, 1];
             meta garment_id (sha256 hex)
    garment  tensors image (h,w,3) uint8 RGB, mask (h,w) uint8 (255 = cloth),
             landmarks (9,2) float32 (x, y) pixels; meta garment_id, kind
    health   no tensors

Replies: `result` (tensor image (H,W,3) uint8 RGB; meta timings_ms, engine, device), `error`
(meta code, message), `need_garment` (meta garment_id: the gateway does not hold it),
`garment_stored`, `health`. `tryon()` handles `need_garment` itself: it sends the garment once
and repeats the request, all within one timeout.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from transport.base import ClientChannel
from transport.errors import InvalidRequest, RequestTimeout
from transport.frames import Frame, error_frame

# name -> (dtype, shape pattern); "H"/"W" must agree across the person tensors, -1 = any size.
PERSON_TENSORS: dict[str, tuple[str, tuple[str | int, ...]]] = {
    "person": ("uint8", ("H", "W", 3)),
    "parse": ("uint8", ("H", "W")),
    "keypoints": ("float32", (25, 3)),
    "pose_render": ("uint8", ("H", "W", 3)),
}
OPTIONAL_PERSON_TENSORS: dict[str, tuple[str, tuple[str | int, ...]]] = {
    "person_mask": ("float32", ("H", "W")),
}
GARMENT_TENSORS: dict[str, tuple[str, tuple[str | int, ...]]] = {
    "image": ("uint8", ("h", "w", 3)),
    "mask": ("uint8", ("h", "w")),
    "landmarks": ("float32", (9, 2)),
}
GARMENT_ID_HEX_CHARS = 64


class GarmentLike(Protocol):
    """What `tryon` needs of a garment (`garments.Garment` fits)."""

    id: str
    kind: str
    image: np.ndarray
    mask: np.ndarray
    landmarks: np.ndarray


def check_tensors(tensors: Mapping[str, np.ndarray], required: Mapping[str, tuple[str, tuple[str | int, ...]]],
                  optional: Mapping[str, tuple[str, tuple[str | int, ...]]] | None = None,
                  what: str = "request") -> None:
    """Raise InvalidRequest naming the tensor, the expected and the actual dtype/shape."""
    optional = optional or {}
    missing = sorted(set(required) - set(tensors))
    extra = sorted(set(tensors) - set(required) - set(optional))
    if missing or extra:
        raise InvalidRequest(f"{what}: missing tensors {missing}, unexpected tensors {extra}; "
                             f"expected {sorted(required)} (+ optional {sorted(optional)})")
    sizes: dict[str, int] = {}
    for name, arr in tensors.items():
        dtype, pattern = (required.get(name) or optional[name])
        shape = tuple(np.shape(arr))
        ok = np.asarray(arr).dtype.name == dtype and len(shape) == len(pattern)
        for dim, want in zip(shape, pattern, strict=False):
            if isinstance(want, int):
                ok = ok and dim == want
            else:
                ok = ok and sizes.setdefault(want, dim) == dim and dim > 0
        if not ok:
            raise InvalidRequest(f"{what}: tensor {name!r} must be {dtype} {pattern} (sizes so far {sizes}), "
                                 f"got {np.asarray(arr).dtype.name} {shape}")


def check_garment_id(garment_id: object) -> str:
    if (not isinstance(garment_id, str) or len(garment_id) != GARMENT_ID_HEX_CHARS
            or any(c not in "0123456789abcdef" for c in garment_id)):
        raise InvalidRequest(f"garment_id must be a sha256 hex string ({GARMENT_ID_HEX_CHARS} lowercase hex "
                             f"chars), got {garment_id!r:.80}")
    return garment_id


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def garment_frame(garment: GarmentLike, request_id: str | None = None) -> Frame:
    tensors = {"image": garment.image, "mask": garment.mask, "landmarks": garment.landmarks}
    check_tensors(tensors, GARMENT_TENSORS, what=f"garment {garment.id[:12]}")
    return Frame(kind="garment", request_id=request_id or new_request_id(),
                 meta={"garment_id": check_garment_id(garment.id), "kind": str(garment.kind)}, tensors=tensors)


class TryOnClient:
    """Thread-safe: many try-ons may be in flight on one client."""

    def __init__(self, channel: ClientChannel) -> None:
        self.channel = channel

    @classmethod
    def from_config(cls, cfg: Any, mode: str | None = None) -> TryOnClient:
        from transport.auto import connect

        return cls(connect(cfg, mode))

    def tryon(self, person: Mapping[str, np.ndarray], garment: GarmentLike, timeout_s: float,
              request_id: str | None = None) -> Frame:
        """Ask node 2 for a try-on. Returns a `result` or `error` Frame.

        Args:
            person: the PERSON_TENSORS (and optionally person_mask), see the module docstring.
            garment: sent only if the gateway does not hold it yet (`need_garment`).
        Raises:
            InvalidRequest: tensors off-contract. TransportError subclasses: the channel failed
            (PeerUnavailable, RequestTimeout, ...).
        """
        check_tensors(person, PERSON_TENSORS, OPTIONAL_PERSON_TENSORS, what="tryon")
        gid = check_garment_id(garment.id)
        rid = request_id or new_request_id()
        deadline = time.monotonic() + timeout_s
        reply = self.channel.request(Frame("tryon", rid, {"garment_id": gid}, dict(person)), timeout_s)
        if reply.kind != "need_garment":
            return reply
        stored = self.channel.request(garment_frame(garment, f"{rid}.g"), self._left(deadline, rid))
        if stored.kind != "garment_stored":
            return stored if stored.kind == "error" else error_frame(
                rid, "protocol", f"gateway answered the garment with {stored.kind!r}")
        reply = self.channel.request(Frame("tryon", f"{rid}.2", {"garment_id": gid}, dict(person)),
                                     self._left(deadline, rid))
        reply.request_id = rid
        if reply.kind == "need_garment":
            return error_frame(rid, "garment_not_cached", f"the gateway asked for garment {gid} again right "
                               "after storing it (its cache may be too small)")
        return reply

    def put_garment(self, garment: GarmentLike, timeout_s: float) -> Frame:
        """Send a garment ahead of use; returns `garment_stored` or `error`."""
        return self.channel.request(garment_frame(garment), timeout_s)

    def health(self, timeout_s: float) -> Frame:
        return self.channel.request(Frame("health", new_request_id()), timeout_s)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> TryOnClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _left(deadline: float, rid: str) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise RequestTimeout(f"try-on {rid!r} ran out of time while sending its garment")
        return left
