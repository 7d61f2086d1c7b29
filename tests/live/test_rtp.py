"""node1.live.rtp: a video frame leaves the receiver's buffer on its marked last packet (aiortc's stock
buffer waits for the next frame's first packet); aiortc's own rule still covers a lost marker; audio
buffers are untouched; install() makes aiortc's receivers build ours."""

from __future__ import annotations

from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from node1.live.rtp import MarkerJitterBuffer, install


def _packet(seq: int, ts: int, marker: bool, data: bytes) -> RtpPacket:
    p = RtpPacket(sequence_number=seq, timestamp=ts, marker=int(marker))
    p._data = data  # what the depacketizer leaves for the jitter buffer (aiortc's own tests do the same)
    return p


def _frames(buffer: JitterBuffer, packets: list[RtpPacket]) -> list[tuple[int, int, bytes]]:
    """(index of the packet that released it, timestamp, data) per frame handed on."""
    out = []
    for i, p in enumerate(packets):
        _, frame = buffer.add(p)
        if frame is not None:
            out.append((i, frame.timestamp, frame.data))
    return out


def test_a_frame_leaves_on_its_marked_last_packet() -> None:
    packets = [_packet(100, 3000, False, b"a1"), _packet(101, 3000, False, b"a2"), _packet(102, 3000, True, b"a3"),
               _packet(103, 6000, False, b"b1"), _packet(104, 6000, True, b"b2")]
    assert _frames(MarkerJitterBuffer(capacity=128, is_video=True), packets) == [
        (2, 3000, b"a1a2a3"), (4, 6000, b"b1b2")]
    # aiortc's stock buffer: frame A only when B's first packet arrives, frame B not yet
    assert _frames(JitterBuffer(capacity=128, is_video=True), packets) == [(3, 3000, b"a1a2a3")]


def test_a_gap_holds_the_frame_and_a_lost_marker_falls_back_to_the_timestamp_rule() -> None:
    gap = [_packet(10, 90, False, b"x1"), _packet(12, 90, True, b"x3"), _packet(11, 90, False, b"x2")]
    assert _frames(MarkerJitterBuffer(capacity=128, is_video=True), gap) == [(2, 90, b"x1x2x3")]
    lost_marker = [_packet(20, 90, False, b"y1"), _packet(21, 90, False, b"y2"), _packet(22, 180, True, b"z1")]
    assert _frames(MarkerJitterBuffer(capacity=128, is_video=True), lost_marker)[0] == (2, 90, b"y1y2")


def test_audio_buffers_behave_as_aiortcs() -> None:
    packets = [_packet(i, 960 * i, True, bytes([i])) for i in range(8)]
    ours = _frames(MarkerJitterBuffer(capacity=16, prefetch=4), packets)
    assert ours == _frames(JitterBuffer(capacity=16, prefetch=4), packets) and ours


def test_install_makes_aiortcs_receivers_use_it() -> None:
    import asyncio

    from aiortc import RTCPeerConnection, rtcrtpreceiver

    install()
    assert rtcrtpreceiver.JitterBuffer is MarkerJitterBuffer

    async def receiver_buffers() -> tuple[object, object]:
        pc = RTCPeerConnection()
        try:
            video, audio = pc.addTransceiver("video").receiver, pc.addTransceiver("audio").receiver
            return video._RTCRtpReceiver__jitter_buffer, audio._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
        finally:
            await pc.close()

    video_buffer, audio_buffer = asyncio.run(receiver_buffers())
    assert isinstance(video_buffer, MarkerJitterBuffer) and video_buffer._is_video
    assert isinstance(audio_buffer, MarkerJitterBuffer) and not audio_buffer._is_video
