"""RDMA wire layout and flow control, as pure code (no verbs): single-buffer frames, chunks, credits.

A frame travels over RDMA as ONE contiguous message (so it can be packed straight into a
registered buffer, no intermediate bytes object):

    offset  0   u32 MESSAGE_MAGIC  u32 header_len  u64 total_len          (MESSAGE_PREFIX, 16 bytes)
    offset 16   the `transport.frames` JSON header (v1), then zero padding to ALIGN_BYTES
    then        each tensor's bytes in header order, each starting at a multiple of ALIGN_BYTES

The message is cut into chunks that fit the fixed receive slots the peer posted:

    u32 CHUNK_MAGIC  u16 flags  u16 reserved  u64 message_seq  u64 offset  u64 total_len  (CHUNK_HEADER, 32 bytes)
    payload: message bytes [offset, offset + slot_bytes - 32)

Every chunk consumes one receive slot of the peer; credits come back out of band (the receiver
RDMA-WRITEs its cumulative repost count into a counter the sender registered and announced in
its FLAG_HELLO chunk: `CreditWindow`, `RepostCounter`). The receiver checks magic, order and sizes
(`Reassembler`) before `unpack` hands the pieces to `frames.decode`, which checks dtypes and
sizes as on TCP.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterator

import numpy as np

from transport.errors import FrameError, FrameTooLarge, PeerUnavailable
from transport.frames import MAX_HEADER_BYTES, Buffer, Frame, decode, decode_header, encode, tensor_nbytes, view

MESSAGE_MAGIC = 0x564D4631  # "VMF1"
CHUNK_MAGIC = 0x564D4331    # "VMC1"
MESSAGE_PREFIX = struct.Struct("<IIQ")
CHUNK_HEADER = struct.Struct("<IHHQQQ")
ALIGN_BYTES = 64
FLAG_FIRST = 1
FLAG_LAST = 2
FLAG_HELLO = 4      # first chunk of a connection: the sender's credit-counter address and rkey
HELLO = struct.Struct("<QII")  # counter address, rkey, window
CREDIT_POLL_S = 20e-6


def _align(n: int) -> int:
    return (n + ALIGN_BYTES - 1) // ALIGN_BYTES * ALIGN_BYTES


def packed_size(frame: Frame) -> int:
    """Bytes `pack_into` writes for `frame`."""
    parts = encode(frame)
    return _layout(view(parts[0]).nbytes, [view(p).nbytes for p in parts[1:]])[-1]


def _layout(header_len: int, sizes: list[int]) -> list[int]:
    """Offsets of each tensor, then the total size."""
    offset = _align(MESSAGE_PREFIX.size + header_len)
    offsets = []
    for n in sizes:
        offsets.append(offset)
        offset = _align(offset + n)
    return [*offsets, offset]


def pack_into(frame: Frame, buf: memoryview) -> int:
    """Write `frame` into `buf` (e.g. a registered memory region); returns the bytes used.

    Raises:
        FrameTooLarge: `buf` is too small.
    """
    parts = encode(frame)
    header = view(parts[0])
    tensors = [view(np.ascontiguousarray(p).reshape(-1).view(np.uint8)) for p in parts[1:]]
    *offsets, total = _layout(header.nbytes, [t.nbytes for t in tensors])
    if total > buf.nbytes:
        raise FrameTooLarge(f"frame {frame.request_id!r} needs {total} bytes; the buffer holds {buf.nbytes}")
    MESSAGE_PREFIX.pack_into(buf, 0, MESSAGE_MAGIC, header.nbytes, total)
    start = MESSAGE_PREFIX.size
    buf[start:start + header.nbytes] = header
    for off, t in zip(offsets, tensors, strict=True):
        buf[off:off + t.nbytes] = t
    return total


def pack(frame: Frame) -> bytearray:
    """`pack_into` a new buffer (tests and small control messages)."""
    out = bytearray(packed_size(frame))
    pack_into(frame, memoryview(out))
    return out


def unpack(buf: Buffer, max_bytes: int) -> Frame:
    """Check a received single-buffer message and decode it (numpy views over `buf`, no copy)."""
    mv = view(buf).cast("B")
    if mv.nbytes < MESSAGE_PREFIX.size:
        raise FrameError(f"message is {mv.nbytes} bytes, shorter than its {MESSAGE_PREFIX.size}-byte prefix")
    magic, header_len, total = MESSAGE_PREFIX.unpack_from(mv, 0)
    if magic != MESSAGE_MAGIC:
        raise FrameError(f"message magic is {magic:#x}, expected {MESSAGE_MAGIC:#x}: not a transport frame")
    if total != mv.nbytes:
        raise FrameError(f"message prefix says {total} bytes, {mv.nbytes} arrived")
    if total > max_bytes + MAX_HEADER_BYTES:
        raise FrameTooLarge(f"message carries {total} bytes; the limit is {max_bytes}")
    if header_len > MAX_HEADER_BYTES or MESSAGE_PREFIX.size + header_len > total:
        raise FrameError(f"header length {header_len} does not fit the {total}-byte message")
    raw_header = mv[MESSAGE_PREFIX.size:MESSAGE_PREFIX.size + header_len]
    specs = decode_header(raw_header)["tensors"]
    sizes = [tensor_nbytes(spec)[3] for spec in specs]
    *offsets, expected = _layout(header_len, sizes)
    if expected != total:
        raise FrameError(f"tensors listed in the header need a {expected}-byte message, got {total}")
    parts = [raw_header, *(mv[o:o + n] for o, n in zip(offsets, sizes, strict=True))]
    return decode(parts, max_bytes)


def chunk_payload_bytes(slot_bytes: int) -> int:
    if slot_bytes <= CHUNK_HEADER.size:
        raise ValueError(f"slot of {slot_bytes} bytes cannot hold the {CHUNK_HEADER.size}-byte chunk header")
    return slot_bytes - CHUNK_HEADER.size


def iter_chunks(total: int, slot_bytes: int) -> Iterator[tuple[int, int, int]]:
    """(flags, offset, length) of each chunk of a `total`-byte message for `slot_bytes` slots."""
    step = chunk_payload_bytes(slot_bytes)
    offset = 0
    while True:
        length = min(step, total - offset)
        flags = (FLAG_FIRST if offset == 0 else 0) | (FLAG_LAST if offset + length >= total else 0)
        yield flags, offset, length
        offset += length
        if offset >= total:
            return


def write_chunk_header(slot: memoryview, flags: int, seq: int, offset: int, total: int) -> None:
    CHUNK_HEADER.pack_into(slot, 0, CHUNK_MAGIC, flags, 0, seq, offset, total)


class Reassembler:
    """Rebuilds messages from chunks of one connection, in order.

    `feed(chunk)` returns the complete message or None. Each message gets its own buffer: the
    chunk payloads are copied out of the registered receive slot (which is reposted at once so
    the peer can keep sending), and the frame's numpy views then own that memory — the one copy
    on the RDMA receive path.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes + MAX_HEADER_BYTES
        self._buf = bytearray()
        self._seq: int | None = None
        self._expect = 0
        self._total = 0

    def feed(self, chunk: Buffer) -> memoryview | None:
        mv = view(chunk).cast("B")
        if mv.nbytes < CHUNK_HEADER.size:
            raise FrameError(f"chunk of {mv.nbytes} bytes is shorter than its header")
        magic, flags, _reserved, seq, offset, total = CHUNK_HEADER.unpack_from(mv, 0)
        if magic != CHUNK_MAGIC:
            raise FrameError(f"chunk magic is {magic:#x}, expected {CHUNK_MAGIC:#x}")
        payload = mv[CHUNK_HEADER.size:]
        if flags & FLAG_FIRST:
            if total > self.max_bytes:
                self._seq = None
                raise FrameTooLarge(f"message {seq} announces {total} bytes; the limit is {self.max_bytes}")
            self._seq, self._expect, self._total = seq, 0, total
            self._buf = bytearray(total)
        if self._seq != seq or offset != self._expect or total != self._total:
            expected = f"message {self._seq} offset {self._expect}" if self._seq is not None else "a first chunk"
            self._seq = None
            raise FrameError(f"chunk out of order: message {seq} offset {offset}, expected {expected}")
        end = offset + payload.nbytes
        if end > total:
            raise FrameError(f"chunk of message {seq} ends at {end}, past its {total} bytes")
        self._buf[offset:end] = payload
        self._expect = end
        if flags & FLAG_LAST:
            if end != total:
                raise FrameError(f"message {seq} ended at {end} of {total} bytes")
            self._seq = None
            return memoryview(self._buf)[:total]
        return None


class CreditWindow:
    """Sender-side flow control: at most `window` chunks not yet reposted by the receiver.

    The receiver posts `window` receive slots and, after consuming and reposting slots, RDMA-WRITEs
    its cumulative repost count into a registered 8-byte counter on the sender (no receive slot is
    spent on credit updates, so credits cannot deadlock). `take(read_counter, timeout_s)` waits
    until `sent - reposted < window`; that wait is the push back of a slow receiver.
    """

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"credit window must be >= 1, got {window}")
        self.window = window
        self.sent = 0
        self._broken = ""

    def available(self, reposted: int) -> int:
        if reposted > self.sent:
            raise FrameError(f"peer reports {reposted} slots reposted but only {self.sent} chunks were sent")
        return self.window - (self.sent - reposted)

    def take(self, read_counter: Callable[[], int], timeout_s: float,
             poll_s: float = CREDIT_POLL_S) -> None:
        """Consume one credit, polling `read_counter()` (the peer's repost count) until one frees."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._broken:
                raise PeerUnavailable(self._broken)
            if self.available(read_counter()) > 0:
                self.sent += 1
                return
            if time.monotonic() >= deadline:
                raise PeerUnavailable(f"no send credit from the peer for {timeout_s:.1f}s: it stopped "
                                      f"consuming messages ({self.window} chunks outstanding)")
            time.sleep(poll_s)

    def break_(self, reason: str) -> None:
        """Make every later `take` fail with PeerUnavailable(reason) (connection lost)."""
        self._broken = reason


class RepostCounter:
    """Receiver-side cumulative count of reposted slots, and when to tell the peer."""

    def __init__(self, window: int) -> None:
        self.count = 0
        self._told = 0
        self._batch = max(1, window // 4)

    def reposted(self, n: int = 1) -> None:
        self.count += n

    def should_publish(self, at_message_end: bool) -> bool:
        """Publish every window/4 reposts, and at the end of every message (so a peer that sends
        little and then waits for a reply is never left short of credits)."""
        return self.count - self._told >= self._batch or (at_message_end and self.count != self._told)

    def published(self) -> int:
        self._told = self.count
        return self.count
