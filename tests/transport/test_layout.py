"""RDMA wire layout, chunking, reassembly and credit accounting (pure code, runs everywhere)."""

from __future__ import annotations

import numpy as np
import pytest

from transport.errors import DtypeNotAllowed, FrameError, FrameTooLarge, PeerUnavailable
from transport.frames import Frame
from transport.layout import (
    ALIGN_BYTES,
    CHUNK_HEADER,
    MESSAGE_PREFIX,
    CreditWindow,
    Reassembler,
    RepostCounter,
    iter_chunks,
    pack,
    pack_into,
    packed_size,
    unpack,
    write_chunk_header,
)

MB = 1 << 20


def _frame() -> Frame:
    rng = np.random.default_rng(0)
    return Frame("tryon", "r1", {"garment_id": "ab"}, {
        "person": rng.integers(0, 255, (17, 13, 3), dtype=np.uint8),
        "keypoints": rng.random((25, 3), dtype=np.float32),
        "empty": np.zeros((0, 4), np.float64),
    })


def test_pack_unpack_roundtrip_aligned() -> None:
    f = _frame()
    buf = pack(f)
    assert len(buf) == packed_size(f) and len(buf) % ALIGN_BYTES == 0
    g = unpack(buf, 1 * MB)
    assert (g.kind, g.request_id, g.meta) == ("tryon", "r1", {"garment_id": "ab"})
    for name, arr in f.tensors.items():
        np.testing.assert_array_equal(g.tensors[name], arr)
        assert g.tensors[name].dtype == arr.dtype
        # zero copy: each tensor is a view into the message, at an aligned offset
        assert g.tensors[name].base is not None
    addr = np.frombuffer(buf, np.uint8).ctypes.data
    assert (g.tensors["keypoints"].ctypes.data - addr) % ALIGN_BYTES == 0


def test_pack_into_too_small_buffer() -> None:
    f = _frame()
    with pytest.raises(FrameTooLarge, match="needs"):
        pack_into(f, memoryview(bytearray(packed_size(f) - 1)))


@pytest.mark.parametrize("corrupt, match", [
    (lambda b: b.__setitem__(slice(0, 4), b"XXXX"), "magic"),
    (lambda b: b.__setitem__(slice(8, 16), (len(b) + 64).to_bytes(8, "little")), "prefix says"),
    (lambda b: b.__setitem__(slice(4, 8), (70000).to_bytes(4, "little")), "header length"),
    (lambda b: b.__setitem__(slice(16, 18), b"]]"), "not valid JSON"),
])
def test_unpack_rejects_corruption(corrupt, match) -> None:  # type: ignore[no-untyped-def]
    buf = pack(_frame())
    corrupt(buf)
    with pytest.raises(FrameError, match=match):
        unpack(buf, 1 * MB)


def test_unpack_checks_dtype_and_limit() -> None:
    buf = pack(_frame())
    text = bytes(buf).replace(b'"float32"', b'"object7"')
    with pytest.raises(DtypeNotAllowed, match="object7"):
        unpack(bytearray(text), 1 * MB)
    with pytest.raises(FrameTooLarge):
        unpack(pack(Frame("x", "1", tensors={"a": np.zeros(200_000, np.uint8)})), 1000)


def test_unpack_truncated() -> None:
    with pytest.raises(FrameError, match="shorter"):
        unpack(b"\x00" * 8, MB)


@pytest.mark.parametrize("total, slot", [(1, 64), (32, 64), (33, 64), (1000, 96), (5 * MB + 7, MB)])
def test_chunks_cover_message(total: int, slot: int) -> None:
    chunks = list(iter_chunks(total, slot))
    assert chunks[0][0] & 1 and chunks[-1][0] & 2
    assert sum(c[2] for c in chunks) == total
    assert all(c[2] <= slot - CHUNK_HEADER.size for c in chunks)
    assert [c[1] for c in chunks] == sorted(c[1] for c in chunks)


def _chunks_of(message: bytes, slot: int, seq: int) -> list[bytes]:
    out = []
    for flags, offset, length in iter_chunks(len(message), slot):
        buf = bytearray(CHUNK_HEADER.size + length)
        write_chunk_header(memoryview(buf), flags, seq, offset, len(message))
        buf[CHUNK_HEADER.size:] = message[offset:offset + length]
        out.append(bytes(buf))
    return out


def test_reassembly_roundtrip_through_slots() -> None:
    f = _frame()
    message = bytes(pack(f))
    r = Reassembler(MB)
    results = [r.feed(c) for c in _chunks_of(message, 128, seq=7)]
    assert all(x is None for x in results[:-1])
    g = unpack(results[-1], MB)  # type: ignore[arg-type]
    np.testing.assert_array_equal(g.tensors["person"], f.tensors["person"])
    # a second message on the same connection reassembles too; the first stays intact
    results2 = [r.feed(c) for c in _chunks_of(message, 200, seq=8)]
    assert bytes(results2[-1]) == message and bytes(results[-1]) == message  # type: ignore[arg-type]


def test_reassembly_rejects_gaps_and_oversize() -> None:
    message = bytes(pack(_frame()))
    chunks = _chunks_of(message, 128, seq=1)
    r = Reassembler(MB)
    r.feed(chunks[0])
    with pytest.raises(FrameError, match="out of order"):
        r.feed(chunks[2])
    with pytest.raises(FrameError, match="out of order"):  # a middle chunk without a first one
        Reassembler(MB).feed(chunks[1])
    with pytest.raises(FrameTooLarge, match="announces"):
        Reassembler(10).feed(_chunks_of(b"x" * 100_000, 1 << 16, seq=1)[0])
    bad = bytearray(chunks[0])
    bad[0:4] = b"NOPE"
    with pytest.raises(FrameError, match="magic"):
        Reassembler(MB).feed(bad)


def test_credit_window_blocks_and_resumes() -> None:
    w = CreditWindow(2)
    counter = [0]
    w.take(lambda: counter[0], 0.01)
    w.take(lambda: counter[0], 0.01)
    assert w.available(counter[0]) == 0
    with pytest.raises(PeerUnavailable, match="no send credit"):
        w.take(lambda: counter[0], 0.02)
    counter[0] = 1  # the receiver reposted one slot and published it
    w.take(lambda: counter[0], 0.01)
    with pytest.raises(FrameError, match="reports 9"):
        w.available(9)
    w.break_("connection lost")
    with pytest.raises(PeerUnavailable, match="connection lost"):
        w.take(lambda: 100, 0.01)


def test_credit_protocol_simulation_never_overruns() -> None:
    """Sender and receiver exchange 1000 chunks; the receiver never holds more than `window`."""
    window = 4
    sender, receiver = CreditWindow(window), RepostCounter(window)
    published = [0]
    in_slots: list[int] = []
    rng = np.random.default_rng(1)
    sent = delivered = 0
    while delivered < 1000:
        if sent < 1000 and sender.available(published[0]) > 0 and rng.random() < 0.6:
            sender.take(lambda: published[0], 0.0)
            in_slots.append(sent)
            sent += 1
            assert len(in_slots) <= window
        elif in_slots:
            assert in_slots.pop(0) == delivered
            delivered += 1
            receiver.reposted()
            if receiver.should_publish(at_message_end=not in_slots):
                published[0] = receiver.published()
    assert sent == delivered == 1000


def test_prefix_sizes_are_stable() -> None:
    assert MESSAGE_PREFIX.size == 16 and CHUNK_HEADER.size == 32
