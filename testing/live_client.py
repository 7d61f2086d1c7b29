"""A real WebRTC client of the live mirror (aiortc), for tests and bench/live_bench.py.

    async with LiveClient(base_url, cafile, frames, garment="demo-01", fps=30, stamp=True) as c:
        await c.wait_frames(10, timeout_s=60)
        c.received          # [(frame number or None, arrival time, (H, W, 3) uint8 RGB or None)]
        c.latencies_ms()    # glass-to-glass per received stamped frame
        await c.switch("demo-02")      # over the data channel

Frames are sent paced at `fps` (aiortc's VideoStreamTrack clock). With `stamp`, each sent frame carries
its number as a STAMP_BITS-bit barcode of STAMP_BLOCK px black/white blocks along its top edge, read
back from the received frame (the try-on never redraws that strip: it is outside the person), so the
latency of every received frame is measured from the moment its picture was made to its arrival after
decoding: glass to glass, minus the camera and the screen.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.error
import urllib.request
from fractions import Fraction
from typing import Any

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamError

STAMP_BITS = 16
STAMP_BLOCK = 16          # px per bit (VP8 keeps 16 px blocks readable)
STAMP_TOP = 12            # px from the top edge (clear of the 6 px hint frame)
STAMP_LEFT = 16
HTTP_TIMEOUT_S = 60.0
VIDEO_CLOCK_HZ = 90000     # RTP's video clock
KEEP_PIXELS = 400         # received frames whose pixels are kept (memory bound)


def stamp(rgb: np.ndarray, number: int) -> np.ndarray:
    """A copy of (H, W, 3) uint8 `rgb` with `number` (0 <= n < 2**STAMP_BITS) as a barcode at the top."""
    out = rgb.copy()
    for bit in range(STAMP_BITS):
        x = STAMP_LEFT + bit * STAMP_BLOCK
        out[STAMP_TOP:STAMP_TOP + STAMP_BLOCK, x:x + STAMP_BLOCK] = 255 if (number >> bit) & 1 else 0
    return out


def read_stamp(rgb: np.ndarray) -> int:
    """The number stamped by `stamp` (block centres' luminance thresholded at mid-grey)."""
    lum = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    c = STAMP_BLOCK // 4
    n = 0
    for bit in range(STAMP_BITS):
        x = STAMP_LEFT + bit * STAMP_BLOCK
        block = lum[STAMP_TOP + c:STAMP_TOP + STAMP_BLOCK - c, x + c:x + STAMP_BLOCK - c]
        n |= int(block.mean() > 128) << bit
    return n


def api_request(base_url: str, ctx: ssl.SSLContext, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """(status, parsed JSON or None) of a call to the HTTPS API; `body` JSON-encoded unless bytes."""
    if not base_url.startswith("https://"):
        raise ValueError(f"the live API is served over HTTPS; got {base_url!r}")
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(base_url.rstrip("/") + path, data=data, method=method,  # noqa: S310 (https only)
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=HTTP_TIMEOUT_S) as resp:  # noqa: S310
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


class FrameSource(VideoStreamTrack):
    """Plays `frames` in a loop at aiortc's 30 fps video clock (or `fps`), stamping numbers if asked."""

    def __init__(self, frames: list[np.ndarray], fps: float = 30.0, do_stamp: bool = True) -> None:
        super().__init__()
        self.frames = frames
        self.period_s = 1.0 / fps
        self.do_stamp = do_stamp
        self.count = 0
        self.sent_at: dict[int, float] = {}
        self._t0: float | None = None
        self.paused = False

    async def recv(self) -> av.VideoFrame:
        if self._t0 is None:
            self._t0 = time.monotonic()
        due = self._t0 + self.count * self.period_s
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        i = self.count
        self.count += 1
        img = self.frames[i % len(self.frames)]
        if self.do_stamp:
            img = stamp(img, i % (1 << STAMP_BITS))
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        frame.pts = round(i * self.period_s * VIDEO_CLOCK_HZ)
        frame.time_base = Fraction(1, VIDEO_CLOCK_HZ)
        self.sent_at[i] = time.monotonic()
        return frame


class LiveClient:
    """One live session from a Python client (see the module docstring)."""

    def __init__(self, base_url: str, cafile: str, frames: list[np.ndarray], garment: str, *, fps: float = 30.0,
                 do_stamp: bool = True, marker_frames: bool = True) -> None:
        """marker_frames: assemble received frames on the RTP marker bit as browsers do
        (node1.live.rtp, process-wide); False keeps aiortc's stock buffer, which holds every frame
        until the next one starts arriving."""
        if not base_url.startswith("https://"):
            raise ValueError(f"the live API is served over HTTPS; got {base_url!r}")
        if marker_frames:
            from node1.live.rtp import install

            install()
        self.base = base_url.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=cafile)
        self.garment = garment
        self.source = FrameSource(frames, fps, do_stamp)
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = self.pc.createDataChannel("control")
        self.session = ""
        self.received: list[tuple[int | None, float, np.ndarray | None]] = []
        self.messages: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None
        self._new_frame = asyncio.Event()

    # ------------------------------------------------------------------ HTTP
    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """(status, parsed JSON or None) of an API call (blocking; call via asyncio.to_thread)."""
        return api_request(self.base, self.ctx, method, path, body)

    # ------------------------------------------------------------------ session
    async def connect(self) -> None:
        self.pc.addTransceiver(self.source, direction="sendrecv")

        @self.pc.on("track")
        def on_track(track: Any) -> None:
            self._reader = asyncio.ensure_future(self._read(track))

        @self.channel.on("message")
        def on_message(message: Any) -> None:
            self.messages.append(json.loads(message))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        status, body = await asyncio.to_thread(self.request, "POST", "/api/live/offer",
                                               {"sdp": self.pc.localDescription.sdp, "type": "offer",
                                                "garment": self.garment})
        if status != 200:
            raise RuntimeError(f"offer refused: {status} {body}")
        self.session = body["session"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body["sdp"], type=body["type"]))

    async def _read(self, track: Any) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            rgb = frame.to_ndarray(format="rgb24")
            number = read_stamp(rgb) if self.source.do_stamp else None
            keep = rgb if len(self.received) < KEEP_PIXELS else None
            self.received.append((number, now, keep))
            self._new_frame.set()

    async def wait_frames(self, n: int, timeout_s: float) -> None:
        """Wait until `n` frames in all have been received (TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout_s
        while len(self.received) < n:
            self._new_frame.clear()
            await asyncio.wait_for(self._new_frame.wait(), max(0.01, deadline - time.monotonic()))

    async def switch(self, garment: str) -> None:
        self.channel.send(json.dumps({"garment": garment}))

    def latencies_ms(self) -> list[float]:
        """Glass-to-glass latency of every received frame whose stamp names a frame sent (ms)."""
        out = []
        for number, arrived, _ in self.received:
            sent = self.source.sent_at.get(number) if number is not None else None
            if sent is not None and arrived >= sent:
                out.append((arrived - sent) * 1000.0)
        return out

    async def hang_up(self, delete: bool = True) -> None:
        """End the session: DELETE it on the server (unless `delete` is False: a peer that vanishes)."""
        if delete and self.session:
            await asyncio.to_thread(self.request, "DELETE", f"/api/live/{self.session}")
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()

    async def __aenter__(self) -> LiveClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.hang_up()


def photo_sequence(rgb: np.ndarray, n: int, size: tuple[int, int] = (640, 480), amplitude_px: int = 8
                   ) -> list[np.ndarray]:
    """`n` frames of size (W, H) showing the photo `rgb` (H, W, 3) uint8 fitted to the height and
    centred, swaying sideways and bobbing by up to `amplitude_px` (a person standing before a camera)."""
    import cv2

    w, h = size
    s = h / rgb.shape[0]
    pic = cv2.resize(rgb, (round(rgb.shape[1] * s), h), interpolation=cv2.INTER_AREA)
    pad = max(0, w - pic.shape[1])
    base = cv2.copyMakeBorder(pic, amplitude_px, amplitude_px, pad // 2 + amplitude_px, pad - pad // 2 + amplitude_px,
                              cv2.BORDER_REPLICATE)
    frames = []
    for k in range(n):
        dx = round(amplitude_px * np.sin(2 * np.pi * k / max(n, 1)))
        dy = round(amplitude_px / 2 * np.sin(4 * np.pi * k / max(n, 1)))
        x0, y0 = amplitude_px + dx, amplitude_px + dy
        frames.append(np.ascontiguousarray(base[y0:y0 + h, x0:x0 + w]))
    return frames
