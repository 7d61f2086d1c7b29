"""One live session's media (aiortc): the browser's camera track in, the dressed track out, a data channel.

Threads: aiortc lives on the manager's asyncio loop; the per-frame work runs on the session's worker
thread (torch and node 2 release the GIL), which only ever takes the newest frame.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any

import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from node1.live import rtp
from node1.live.errors import UnknownLiveGarment
from node1.tryon import UnknownGarment

log = logging.getLogger("node1.live")

WORKER_JOIN_S = 5.0
RATE_WINDOW_S = 2.0   # the delivered fps and latency in stats are over this window


class DressedTrack(MediaStreamTrack):
    """The outgoing video: recv() returns the newest processed frame (older ones are replaced)."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self._queue: asyncio.Queue[av.VideoFrame] = asyncio.Queue(maxsize=1)

    def put(self, frame: av.VideoFrame) -> None:
        """Called on the loop: offer a frame, replacing one the sender has not taken yet."""
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(frame)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        return await self._queue.get()


class LiveSession:
    """A peer connection, its newest-frame mailbox, worker thread and data channel."""

    def __init__(self, session_id: str, processor: Any, metrics: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.id = session_id
        self.processor = processor
        self.metrics = metrics
        self.loop = loop
        rtp.install()   # the camera's frames leave aiortc's buffer on their last packet, not the next frame's first
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # loopback / LAN: no STUN server to ask
        self.output = DressedTrack()
        self.answer_sdp = ""
        self.started_at = self.last_frame_at = self.stats_at = time.monotonic()
        self.failed = False
        self.frames_in = 0
        self.status = "starting"
        self.channel: Any = None
        self._mailbox: tuple[av.VideoFrame, float] | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name=f"live-{session_id[:8]}", daemon=True)
        # the second half (node 2's try-on leg, composite) overlaps the next frame's preprocessing
        self._ready: tuple[Any, av.VideoFrame, float] | None = None
        self._dresser = threading.Thread(target=self._dress_loop, name=f"live-{session_id[:8]}-dress", daemon=True)
        self._tasks: list[asyncio.Task[None]] = []
        self._delivered: list[tuple[float, float]] = []   # (when, latency ms) of recent output frames
        self._shown_garment = processor.garment_id         # the garment of the newest frame sent

    async def start(self, offer_sdp: str) -> None:
        pc = self.pc

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video":
                pc.addTrack(self.output)
                self._tasks.append(asyncio.ensure_future(self._consume(track)))

        @pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            self.channel = channel
            channel.on("message", lambda message: asyncio.ensure_future(self._on_message(message)))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):   # the watchdog ends it on its next round
                self.failed = True

        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        if not any(t.kind == "video" for t in pc.getTransceivers()):
            raise ValueError("the offer has no video track")
        await pc.setLocalDescription(await pc.createAnswer())
        self.answer_sdp = pc.localDescription.sdp
        self._worker.start()
        self._dresser.start()

    async def _consume(self, track: MediaStreamTrack) -> None:
        """Read the camera; keep only the newest frame (a replaced one is dropped, and counted)."""
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, av.VideoFrame):
                continue
            now = time.monotonic()
            self.last_frame_at = now
            self.frames_in += 1
            self.metrics.live_frames_in.inc()
            with self._cond:
                if self._mailbox is not None:
                    self.metrics.live_frames_dropped.inc()
                self._mailbox = (frame, now)
                self._cond.notify_all()

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._mailbox is None and not self._closed:
                    self._cond.wait()
                if self._closed or self._mailbox is None:
                    return
                frame, received = self._mailbox
                self._mailbox = None
            try:
                self._process(frame, received)
            except Exception:  # a frame must never kill the session: log it, pass on to the next
                log.exception("live session %s: frame failed", self.id[:8])

    def _process(self, frame: av.VideoFrame, received: float) -> None:
        """First half on the worker thread; the prepared frame goes to the dresser's one-slot mailbox
        (a prepared frame replaced before the dresser took it is dropped, and counted)."""
        rgb = frame.to_ndarray(format="rgb24")
        t = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else time.monotonic()
        prepared = self.processor.prepare(rgb, t)
        with self._cond:
            if self._ready is not None:
                self.metrics.live_frames_dropped.inc()
            self._ready = (prepared, frame, received)
            self._cond.notify_all()

    def _dress_loop(self) -> None:
        while True:
            with self._cond:
                while self._ready is None and not self._closed:
                    self._cond.wait()
                if self._closed or self._ready is None:
                    return
                prepared, frame, received = self._ready
                self._ready = None
            try:
                self._finish(prepared, frame, received)
            except Exception:  # a frame must never kill the session: log it, pass on to the next
                log.exception("live session %s: frame failed", self.id[:8])

    def _finish(self, prepared: Any, frame: av.VideoFrame, received: float) -> None:
        result = self.processor.finish(prepared)
        out = av.VideoFrame.from_ndarray(result.image, format="rgb24")
        out.pts, out.time_base = frame.pts, frame.time_base
        latency_ms = (time.monotonic() - received) * 1000.0
        self.status = result.status
        self.metrics.live_frames_processed.labels(status=result.status).inc()
        for stage, ms in result.timings_ms.items():
            if stage != "prepare":
                self.metrics.live_frame_duration.labels(stage=stage).observe(ms / 1000.0)
        self.metrics.live_frame_duration.labels(stage="latency").observe(latency_ms / 1000.0)
        if self._closed:
            return
        self.loop.call_soon_threadsafe(self._deliver, out, latency_ms, result)

    def _deliver(self, out: av.VideoFrame, latency_ms: float, result: Any) -> None:
        now = time.monotonic()
        self.output.put(out)
        self._delivered.append((now, latency_ms))
        self._last_result = result
        if result.garment and result.garment != self._shown_garment:   # a switch is acknowledged when
            self._shown_garment = result.garment                       # its first frame goes out
            self._send({"type": "garment", "garment": result.garment})

    def send_stats(self, now: float) -> None:
        """Once a second on the data channel: delivered fps, server-side latency, scale, status."""
        self.stats_at = now
        self._delivered = [d for d in self._delivered if now - d[0] <= RATE_WINDOW_S]
        fps = len(self._delivered) / RATE_WINDOW_S
        latency = sorted(d[1] for d in self._delivered)
        result = getattr(self, "_last_result", None)
        self._send({"type": "stats", "fps": round(fps, 1),
                    "latency_ms": round(latency[len(latency) // 2], 1) if latency else None,
                    "scale": getattr(result, "scale", 1.0), "status": self.status,
                    "code": getattr(result, "code", ""), "garment": self.processor.garment_id})

    def _send(self, message: dict[str, Any]) -> None:
        ch = self.channel
        if ch is not None and ch.readyState == "open":
            ch.send(json.dumps(message, separators=(",", ":")))

    def switch(self, garment_id: str) -> None:
        """Wear `garment_id` from the next frame on (UnknownLiveGarment)."""
        try:
            self.processor.set_garment(garment_id)
        except UnknownGarment as exc:
            raise UnknownLiveGarment(f"no garment with id {garment_id!r} in the catalog") from exc

    async def _on_message(self, message: Any) -> None:
        try:
            body = json.loads(message) if isinstance(message, str) else None
        except ValueError:
            body = None
        garment = body.get("garment") if isinstance(body, dict) else None
        if not isinstance(garment, str):
            self._send({"type": "error", "error": {"code": "bad_message",
                                                   "message": "send {\"garment\": ID} to switch garments"}})
            return
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.switch, garment)
        except UnknownLiveGarment as exc:
            self._send({"type": "error", "error": {"code": exc.code, "message": exc.message}})

    async def close(self) -> None:
        with self._cond:
            self._closed = True
            self._mailbox = self._ready = None
            self._cond.notify_all()
        self.output.stop()
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
        for thread in (self._worker, self._dresser):
            if thread.is_alive():
                await asyncio.get_running_loop().run_in_executor(None, thread.join, WORKER_JOIN_S)
