"""Video frames out of aiortc's RTP receiver as soon as they are complete (the RTP marker bit).

aiortc 1.16's JitterBuffer hands a video frame to the decoder only when the FIRST packet of the NEXT
frame arrives (it finds a frame's end by the timestamp changing, aiortc/jitterbuffer.py), so every frame
waits one frame interval in the receiver: ~33 ms at the camera's 30 fps into node 1, and as much as the
interval of the dressed stream (~70 ms at 14 fps) into an aiortc client. Browsers assemble a frame when
its last packet arrives, which the sender marks (RFC 3550 / RFC 7741: the marker bit is set on the last
packet of a VP8 frame; aiortc's own sender sets it too).

MarkerJitterBuffer keeps aiortc's rule (it still applies when a marked packet is lost) and adds the
marker one: packets contiguous from the buffer's origin, all with one timestamp, ending with a marked
packet, are a complete frame, handed on at once. Audio buffers are unchanged.

    install()      make this process's aiortc receivers use it (idempotent; node1.live.media calls it)
"""

from __future__ import annotations

from aiortc import rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket


class MarkerJitterBuffer(JitterBuffer):
    """aiortc's JitterBuffer, plus: a video frame leaves on its marked last packet."""

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        frame = super()._remove_frame(sequence_number)
        if frame is not None or not self._is_video or self._origin is None:
            return frame
        packets: list[RtpPacket] = []
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is None or (packets and packet.timestamp != packets[0].timestamp):
                return None   # a gap (a lost or late packet), or no marked end: aiortc's rule decides later
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                data = b"".join(p._data for p in packets)  # type: ignore[attr-defined]  # set by aiortc's receiver
                return JitterFrame(data=data, timestamp=packet.timestamp)
        return None


def install() -> None:
    """aiortc's RTCRtpReceiver builds its buffers from this module attribute: point it at ours."""
    rtcrtpreceiver.JitterBuffer = MarkerJitterBuffer  # type: ignore[misc]
