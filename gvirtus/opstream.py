"""The op stream of the transparent layer: one bidirectional gRPC stream per session that carries queued
ops in coalesced batches (no reply awaited) and answers synchronising calls (gvirtus.transparent)."""

from __future__ import annotations

import itertools
import threading
from collections import deque
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import grpc

from gvirtus.client import Connection, translate_rpc_error
from gvirtus.errors import GvirtusError, RemoteDeviceLost, error_class
from gvirtus.proto import gvirtus_pb2 as pb
from gvirtus.protocol import CALL_TIMEOUT_S, CLIENT_HANDLE_BASE, PIPELINE_MAX_BATCH

PIPELINE_MAX_PENDING = 8192      # queued items before the producer blocks (backpressure)
PIPELINE_CLOSE_TIMEOUT_S = 5.0


class OpStream:
    """One bidirectional stream: ops/uploads/releases go out in batches, sync replies come back."""

    def __init__(self, conn: Connection, generation: int) -> None:
        self.conn = conn
        self.generation = generation
        self.error: GvirtusError | None = None
        # A deque plus an event the sender waits on only when it has run dry: producers pay one
        # append per op, not a lock round trip (queue.Queue costs ~8 us per put).
        self._items: deque[pb.PipelineItem | int | None] = deque()   # int: a released id
        self._wake = threading.Event()
        self._space = threading.Condition()
        self._ids = itertools.count(CLIENT_HANDLE_BASE)
        self._seq = itertools.count(1)
        self._waiters: dict[int, Future[pb.SyncReply]] = {}
        self._lock = threading.Lock()
        self._batch_bytes = max(conn.max_message_bytes // 2, 1)
        self._closed = False
        self._call = conn.stub.Pipeline(self._requests(), metadata=conn.metadata)
        self._reader = threading.Thread(target=self._read, name="gvirtus-pipeline", daemon=True)
        self._reader.start()

    def _requests(self) -> Any:
        items = self._items
        while True:
            if not items:
                self._wake.clear()
                if not items:
                    self._wake.wait()
            batch = pb.PipelineBatch()
            size = 0
            release: Any = None          # the Release message that consecutive released ids go into
            while items and len(batch.items) < PIPELINE_MAX_BATCH:
                item = items[0]
                if item is None:
                    if batch.items:
                        yield batch
                    return
                if isinstance(item, int):  # a released id, ordered after every op that used it
                    items.popleft()
                    if release is None:
                        release = batch.items.add().release
                    release.ids.append(item)
                    continue
                cost = _payload(item)
                if batch.items and size + cost > self._batch_bytes:
                    break
                items.popleft()
                batch.items.append(item)
                release = None
                size += cost
            if len(items) < PIPELINE_MAX_PENDING // 2:
                with self._space:
                    self._space.notify_all()
            if batch.items:
                yield batch

    def _read(self) -> None:
        err: GvirtusError
        try:
            for reply in self._call:
                with self._lock:
                    fut = self._waiters.pop(reply.seq, None)
                if fut is not None:
                    fut.set_result(reply)
            err = RemoteDeviceLost("the transparent-layer stream was closed")
        except grpc.RpcError as exc:
            err = translate_rpc_error(exc, self.conn.target, "transparent op stream")
        self.error = err
        with self._lock:
            waiters, self._waiters = self._waiters, {}
        for fut in waiters.values():
            fut.set_exception(err)

    def new_id(self) -> int:
        return next(self._ids)

    def send(self, item: pb.PipelineItem) -> None:
        if self.error is not None:
            raise self.error
        if self._closed:
            raise RemoteDeviceLost("this RemoteDevice's transparent stream is closed")
        self._push(item)

    def _push(self, item: pb.PipelineItem | None) -> None:
        if len(self._items) >= PIPELINE_MAX_PENDING:     # backpressure: wait for the sender to drain
            with self._space:
                self._space.wait_for(lambda: len(self._items) < PIPELINE_MAX_PENDING or self.error is not None,
                                     timeout=CALL_TIMEOUT_S)
        self._items.append(item)
        if not self._wake.is_set():
            self._wake.set()

    def release(self, hid: int) -> None:
        """Called by finalizers (any thread, maybe inside GC): never blocks, goes out with the next batch."""
        if not self._closed and self.error is None:
            self._items.append(hid)

    def sync(self, fetch: list[int] | None = None, describe: list[int] | None = None,
             timeout_s: float = CALL_TIMEOUT_S) -> pb.SyncReply:
        """Wait until every op sent so far ran; raise the first error since the last sync."""
        seq = next(self._seq)
        fut: Future[pb.SyncReply] = Future()
        with self._lock:
            self._waiters[seq] = fut
        self.send(pb.PipelineItem(sync=pb.Sync(seq=seq, fetch=fetch or [], describe=describe or [])))
        try:
            reply = fut.result(timeout=timeout_s)
        except FutureTimeout:
            raise RemoteDeviceLost(f"no answer from the backend at {self.conn.target} within {timeout_s:.0f} s "
                                   "to a synchronising call") from None
        if reply.error_kind:
            raise error_class(reply.error_kind)(f"{reply.error} (reported at this synchronising call; the op "
                                                "ran earlier in the pipeline)")
        return reply

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._items.append(None)
        self._wake.set()
        self._reader.join(PIPELINE_CLOSE_TIMEOUT_S)
        if self._reader.is_alive():
            self._call.cancel()


def _payload(item: pb.PipelineItem) -> int:
    kind = item.WhichOneof("item")
    if kind == "upload":
        return len(item.upload.tensor.data)
    if kind == "op":
        return len(item.op.args_json) + sum(len(c.data) for c in item.op.constants)
    return 16
