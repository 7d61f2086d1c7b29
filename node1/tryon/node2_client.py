"""Node 1's client of node 2's gateway: person tensors + a garment in, the gateway's reply Frame out.

The messages are the try-on contract's (viton/contract.py): `tryon` carries the person tensors the
configured engine reads and meta garment_id; a `need_garment` answer makes the client send the
garment once (kind `garment`) and repeat the try-on, all within one timeout.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from transport import ClientChannel, Frame, InvalidRequest, RequestTimeout, error_frame, new_request_id
from viton import contract
from viton.contract import ContractError, ErrorCode, Kind


class GarmentLike(Protocol):
    """What `tryon` needs of a garment (`garments.Garment` fits)."""

    id: str
    kind: str
    image: np.ndarray
    mask: np.ndarray
    landmarks: np.ndarray


def garment_frame(garment: GarmentLike, request_id: str | None = None) -> Frame:
    """The contract's `garment` message. Raises transport.InvalidRequest when it is off-contract."""
    tensors = {"image": garment.image, "mask": garment.mask, "landmarks": garment.landmarks}
    try:
        contract.check_tensors(tensors, contract.GARMENT_TENSORS, tuple(tensors), what=f"garment {garment.id[:12]}")
        contract.check_garment_landmarks(str(garment.kind), garment.landmarks, what=f"garment {garment.id[:12]}")
        gid = contract.check_garment_id(garment.id)
    except ContractError as exc:
        raise InvalidRequest(str(exc)) from exc
    return Frame(kind=Kind.GARMENT, request_id=request_id or new_request_id(),
                 meta={"garment_id": gid, "kind": str(garment.kind)}, tensors=tensors)


class TryOnClient:
    """Thread-safe: many try-ons may be in flight on one client.

    Args:
        channel: a transport channel to the gateway (transport.connect(cfg)).
        reads: the person tensors the configured engine reads (viton.contract.reads_of(engine)).
    """

    def __init__(self, channel: ClientChannel, reads: tuple[str, ...] = contract.ENGINE_READS["geometric"]) -> None:
        self.channel = channel
        self.reads = reads

    @classmethod
    def from_config(cls, cfg: Any, mode: str | None = None) -> TryOnClient:
        from transport.auto import connect

        return cls(connect(cfg, mode), contract.reads_of(cfg["viton"]["engine"]))

    def tryon(self, person: Mapping[str, np.ndarray], garment: GarmentLike, timeout_s: float,
              request_id: str | None = None, result: Mapping[str, object] | None = None) -> Frame:
        """Ask node 2 for a try-on. Returns a `result` or `error` Frame.

        Args:
            person: exactly the person tensors in `self.reads` (viton.contract.PERSON_TENSORS).
            garment: sent only if the gateway does not hold it yet (`need_garment`).
            result: how the result comes back (viton.contract.result_request; None: raw pixels).
        Raises:
            InvalidRequest: tensors off-contract (names the tensor). TransportError subclasses: the
            channel failed (PeerUnavailable, RequestTimeout, ...).
        """
        try:
            contract.check_person(person, self.reads)
            extra = set(person) - set(self.reads) - {contract.PERSON_AS_JPEG}
            if extra:
                raise ContractError(f"tryon carries {sorted(extra)}, which the engine does not read (it reads "
                                    f"{', '.join(self.reads)})")
            gid = contract.check_garment_id(garment.id)
            contract.check_result_request(result or {})
        except ContractError as exc:
            raise InvalidRequest(str(exc)) from exc
        rid = request_id or new_request_id()
        deadline = time.monotonic() + timeout_s
        meta = {"garment_id": gid, **(result or {})}
        reply = self.channel.request(Frame(Kind.TRYON, rid, meta, dict(person)), timeout_s)
        if reply.kind != Kind.NEED_GARMENT:
            return reply
        stored = self.channel.request(garment_frame(garment, f"{rid}.g"), self._left(deadline, rid))
        if stored.kind != Kind.GARMENT_STORED:
            return stored if stored.kind == Kind.ERROR else error_frame(
                rid, ErrorCode.PROTOCOL, f"gateway answered the garment with {stored.kind!r}")
        reply = self.channel.request(Frame(Kind.TRYON, f"{rid}.2", meta, dict(person)),
                                     self._left(deadline, rid))
        reply.request_id = rid
        if reply.kind == Kind.NEED_GARMENT:
            return error_frame(rid, ErrorCode.GARMENT_NOT_CACHED, f"the gateway asked for garment {gid} again "
                               "right after storing it (its cache may be too small)")
        return reply

    def put_garment(self, garment: GarmentLike, timeout_s: float) -> Frame:
        """Send a garment ahead of use; returns `garment_stored` or `error`."""
        return self.channel.request(garment_frame(garment), timeout_s)

    def health(self, timeout_s: float) -> Frame:
        return self.channel.request(Frame(Kind.HEALTH, new_request_id()), timeout_s)

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


class GatewayLink:
    """Node2Link over the transport: node 1's TryOnClient to node 2's gateway."""

    def __init__(self, client: TryOnClient) -> None:
        self.client = client

    @property
    def transport(self) -> str:
        return str(self.client.channel.info.backend)

    def tryon(self, person: dict[str, np.ndarray], garment: Any, timeout_s: float, *,
              request_id: str | None = None, result: Mapping[str, object] | None = None) -> Frame:
        return self.client.tryon(person, garment, timeout_s=timeout_s, request_id=request_id, result=result)

    def health(self, timeout_s: float) -> Frame:
        return self.client.health(timeout_s=timeout_s)
