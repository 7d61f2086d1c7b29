"""The backend side of the transparent layer: run streamed op batches in a session, in order.

Ops arrive without waiting for replies. The first failure since the last Sync is kept and every
later op and upload is skipped until that Sync reports it (releases still run); then the session
goes on. Each distinct (op, argument JSON) pair is decoded once and cached.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils import _pytree as pytree

from gvirtus import codec
from gvirtus.allowlist import resolve_op
from gvirtus.device import cuda_context_lost, synchronize
from gvirtus.errors import GvirtusError, InvalidRequest, QuotaExceeded, RemoteExecutionError
from gvirtus.proto import gvirtus_pb2 as pb
from gvirtus.protocol import CLIENT_HANDLE_BASE, from_wire, to_wire
from gvirtus.sessions import Session

log = logging.getLogger("gvirtus.backend")
OP_CACHE_MAX = 8192   # distinct (op, argument JSON) pairs kept decoded


def translate(exc: BaseException) -> GvirtusError:
    """Any exception from serving a call as a typed gvirtus error."""
    if isinstance(exc, GvirtusError):
        return exc
    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return QuotaExceeded(f"the backend's device is out of memory: {exc}")
    if cuda_context_lost(exc):
        first = str(exc).splitlines()[0]
        return RemoteExecutionError(
            f"{type(exc).__name__}: {first}: an op hit a device-side assert (e.g. an index out of range) or a bad "
            "memory access, which leaves the backend's CUDA context unusable; the backend restarts and every "
            "session is lost: reconnect")
    log.warning("remote execution failed: %s: %s", type(exc).__name__, exc)
    return RemoteExecutionError(f"{type(exc).__name__}: {exc}")


class OpExecutor:
    """Runs PipelineBatches for sessions on one device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._ops: dict[tuple[str, str], Any] = {}

    def run(self, s: Session, batches: Iterator[pb.PipelineBatch]) -> Iterator[pb.SyncReply]:
        """Execute every batch; yield a SyncReply for each Sync item."""
        for batch in batches:
            s.touch()
            with torch.no_grad():
                yield from self._batch(s, batch)

    def _batch(self, s: Session, batch: pb.PipelineBatch) -> Iterator[pb.SyncReply]:
        for item in batch.items:
            kind = item.WhichOneof("item")
            if kind == "sync":
                yield self._sync(s, item.sync)
            elif kind == "release":
                for hid in item.release.ids:
                    if hid in s.tensors:
                        s.release(hid)
            elif s.pipeline_error is None:   # after an error, skip work until the next sync
                try:
                    self._op(s, item.op) if kind == "op" else self._upload(s, item.upload)
                except Exception as exc:
                    s.pipeline_error = translate(exc)

    def _check_client_id(self, hid: int) -> None:
        if hid < CLIENT_HANDLE_BASE:
            raise InvalidRequest(f"id {hid} is below {CLIENT_HANDLE_BASE}: ids the client picks must not "
                                 "collide with the backend's")

    def _upload(self, s: Session, up: pb.Upload) -> None:
        self._check_client_id(up.id)
        s.put(up.id, from_wire(up.tensor).to(self.device), "upload")

    def _decoded(self, target: str, args_json: str) -> tuple[Any, list[Any], dict[str, Any]]:
        """(op, args, kwargs) for an op call; cached, since a client repeats the same JSON per op signature."""
        key = (target, args_json)
        hit = self._ops.get(key)
        if hit is not None:
            return hit
        fn = resolve_op(target)
        data = codec.loads(args_json, f"op {target}: the arguments")   # typed, depth-bounded
        args, kwargs = codec.decode_call(data, self.device)
        entry = (fn, args, kwargs)
        if len(self._ops) < OP_CACHE_MAX:
            self._ops[key] = entry
        return entry

    def _op(self, s: Session, op: pb.Op) -> None:
        fn, args, kwargs = self._decoded(op.target, op.args_json)
        refs = op.refs
        consts = [from_wire(c).to(self.device) for c in op.constants] if op.constants else []

        def lookup(r: codec.Ref) -> torch.Tensor:
            if r.kind == "r" and r.index < len(refs):
                return s.get(refs[r.index])
            if r.kind == "c" and r.index < len(consts):
                return consts[r.index]
            raise InvalidRequest(f"op {op.target}: reference {r} is not valid here")

        out = fn(*codec.substitute(args, lookup), **{k: codec.substitute(v, lookup) for k, v in kwargs.items()})
        leaves = [out] if isinstance(out, torch.Tensor) else [t for t in pytree.tree_leaves(out)
                                                              if isinstance(t, torch.Tensor)]
        if len(leaves) != len(op.outputs):
            raise InvalidRequest(f"op {op.target} produced {len(leaves)} tensors, the client named {len(op.outputs)}")
        for hid, t in zip(op.outputs, leaves, strict=True):
            if hid:
                self._check_client_id(hid)
                s.put(hid, t, f"output of {op.target}")

    def _sync(self, s: Session, sync: pb.Sync) -> pb.SyncReply:
        reply = pb.SyncReply(seq=sync.seq)
        try:
            synchronize(self.device)
        except Exception as exc:
            s.pipeline_error = s.pipeline_error or translate(exc)
        err, s.pipeline_error = s.pipeline_error, None
        if err is not None:
            reply.error_kind, reply.error = type(err).__name__, str(err)[:4000]
            return reply
        try:
            for hid in sync.fetch:
                reply.fetched.append(to_wire(s.get(hid)))
            for hid in sync.describe:
                t = s.get(hid)
                reply.described.add(dtype=str(t.dtype).removeprefix("torch."), shape=t.shape)
        except Exception as exc:
            err = translate(exc)
            return pb.SyncReply(seq=sync.seq, error_kind=type(err).__name__, error=str(err)[:4000])
        return reply
