"""Live sessions: WebRTC signaling and media on node 1 with aiortc, one asyncio loop in a thread.

    manager = LiveManager(runner, metrics, settings)
    manager.offer({"sdp", "type": "offer", "garment"})  -> {"sdp", "type": "answer", "session"}
    manager.switch(session_id, garment_id)                 (or {"garment": id} on the data channel)
    manager.close(session_id)
    manager.count()

The web app runs in gunicorn's gthread worker (threads, no event loop), so the manager runs ONE asyncio
loop in a daemon thread, started on the first offer; Flask handlers reach it through
asyncio.run_coroutine_threadsafe. Each session has:
  * a consumer task reading the browser's video track: it keeps only the NEWEST frame in a one-slot
    mailbox (a frame replaced before it was processed is counted as dropped): nothing ever queues;
  * a worker thread that takes the newest frame, runs the per-frame path (node1.live.frames, loaded by
    name like node1.web's runner factory, so the web app's import graph stays free of the models) and
    hands the result to
  * an output track whose recv() returns the newest processed frame (a one-slot queue again);
  * a data channel (any label) taking {"garment": ID} switches, answered {"type": "garment", "garment": ID}
    when the first frame dressed in it is sent, and sending stats once a second.
A watchdog closes sessions whose peer sent no frame for idle_timeout_s (a vanished peer), that ran
longer than max_duration_s, or whose connection failed or was closed. Frames live only in memory, one at a time.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from node1.live.errors import BadOffer, LiveSessionsFull, LiveUnavailable, UnknownLiveGarment, UnknownSession
from node1.tryon import TryOnError, UnknownGarment

log = logging.getLogger("node1.live")

PROCESSOR_FACTORY = "node1.live.frames:FrameProcessor"
OFFER_TIMEOUT_S = 20.0         # answering an offer (ICE gathering on every local interface included)
CLOSE_TIMEOUT_S = 10.0
WATCHDOG_PERIOD_S = 0.5
SETUP_GRACE_S = 30.0           # ICE + DTLS before the first frame may take this long (a busy machine)
STATS_PERIOD_S = 1.0
MAX_SDP_BYTES = 64 * 1024
MAX_GARMENT_ID_CHARS = 200


@dataclass(frozen=True)
class LiveSettings:
    """config `live`: max_sessions, idle_timeout_s, max_duration_s, width, height (the stream's
    processing size limit, px), target_fps (the frame budget the processing scale adapts to),
    parse_long_side (the human parsing's working grid, px)."""

    max_sessions: int = 2
    idle_timeout_s: float = 10.0
    max_duration_s: float = 600.0
    width: int = 640
    height: int = 480
    target_fps: float = 15.0
    parse_long_side: int = 160

    @classmethod
    def from_config(cls, section: dict[str, Any] | None) -> LiveSettings:
        s = dict(section or {})
        return cls(**{k: type(getattr(cls, k))(v) for k, v in s.items() if k in cls.__dataclass_fields__})


def check_offer(body: Any) -> tuple[str, str]:
    """The JSON offer -> (sdp, garment id). Raises BadOffer naming what is wrong."""
    if not isinstance(body, dict):
        raise BadOffer(f"send a JSON object {{\"sdp\", \"type\": \"offer\", \"garment\"}}, got {type(body).__name__}")
    kind, sdp, garment = body.get("type"), body.get("sdp"), body.get("garment")
    if kind != "offer":
        raise BadOffer(f"field 'type' must be \"offer\", got {kind!r}")
    if not isinstance(garment, str) or not garment.strip() or len(garment) > MAX_GARMENT_ID_CHARS:
        raise BadOffer(f"field 'garment' must be a catalog id (a non-empty string), got {str(garment)[:80]!r}")
    if not isinstance(sdp, str) or not sdp.strip():
        raise BadOffer(f"field 'sdp' must be the offer's SDP text, got {type(sdp).__name__}")
    if len(sdp) > MAX_SDP_BYTES:
        raise BadOffer(f"field 'sdp' is {len(sdp)} characters; at most {MAX_SDP_BYTES} are accepted")
    if not sdp.lstrip().startswith("v=0"):
        raise BadOffer(f"field 'sdp' is not SDP: it must start with 'v=0', got {sdp.strip()[:40]!r}")
    if "\nm=video" not in sdp.replace("\r\n", "\n"):
        raise BadOffer("field 'sdp' offers no video ('m=video' line missing): send the camera track")
    return sdp, garment.strip()


class LiveManager:
    """All live sessions of this process (see the module docstring).

    Args:
        runner: the web app's runner; must offer the per-frame path (node1.tryon.runner.Runner).
        metrics: node1.web.metrics.Metrics (live_* families).
        settings: LiveSettings.
        processor_factory: (runner, garment_id, (W, H), target_fps, parse_long_side=px) -> a FrameProcessor
            (default: by name).
    """

    def __init__(self, runner: Any, metrics: Any, settings: LiveSettings,
                 processor_factory: Callable[..., Any] | None = None) -> None:
        self.runner = runner
        self.metrics = metrics
        self.settings = settings
        self._factory = processor_factory
        self._sessions: dict[str, Any] = {}
        self._opening = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ called from Flask threads
    def count(self) -> int:
        with self._lock:
            return len(self._sessions)

    def offer(self, body: Any) -> dict[str, str]:
        """Open a session for a browser's offer; returns the answer. Raises BadOffer (400),
        UnknownLiveGarment (404), LiveSessionsFull / LiveUnavailable (503)."""
        sdp, garment_id = check_offer(body)
        if not (hasattr(self.runner, "dress") and hasattr(self.runner, "preprocess_frame")):
            raise LiveUnavailable("this deployment's try-on runner has no per-frame path; use the photo mode")
        try:
            self.runner.catalog.get(garment_id)
        except UnknownGarment as exc:
            raise UnknownLiveGarment(f"no garment with id {garment_id!r} in the catalog") from exc
        with self._lock:
            if len(self._sessions) + self._opening >= self.settings.max_sessions:
                raise LiveSessionsFull(f"all {self.settings.max_sessions} live sessions are in use; try again in "
                                       "a minute or use the photo mode")
            self._opening += 1
        try:
            processor = self._processor(garment_id)
            fut = asyncio.run_coroutine_threadsafe(self._open(sdp, processor), self._ensure_loop())
            session = fut.result(OFFER_TIMEOUT_S)
        finally:
            with self._lock:
                self._opening -= 1
        return {"sdp": session.answer_sdp, "type": "answer", "session": session.id}

    def switch(self, session_id: str, garment_id: str) -> None:
        """Wear another garment from the next frame on (UnknownSession, UnknownLiveGarment)."""
        self._get(session_id).switch(garment_id)

    def close(self, session_id: str, reason: str = "closed by the client") -> None:
        session = self._get(session_id)
        asyncio.run_coroutine_threadsafe(self._close(session, reason), self._ensure_loop()).result(CLOSE_TIMEOUT_S)

    def _get(self, session_id: str) -> Any:
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None:
            raise UnknownSession(f"no live session {session_id[:64]!r} (it ended, timed out or never existed)")
        return session

    def _processor(self, garment_id: str) -> Any:
        factory = self._factory
        if factory is None:
            module, _, name = PROCESSOR_FACTORY.partition(":")
            factory = getattr(importlib.import_module(module), name)
        try:
            return factory(self.runner, garment_id, (self.settings.width, self.settings.height),
                           self.settings.target_fps, parse_long_side=self.settings.parse_long_side)
        except UnknownGarment as exc:
            raise UnknownLiveGarment(f"no garment with id {garment_id!r} in the catalog") from exc

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="live-loop", daemon=True).start()
                asyncio.run_coroutine_threadsafe(self._watchdog(), loop)
                self._loop = loop
            return self._loop

    # ------------------------------------------------------------------ on the loop
    async def _open(self, sdp: str, processor: Any) -> Any:
        from node1.live.media import LiveSession

        session = LiveSession(secrets.token_urlsafe(16), processor, self.metrics, asyncio.get_running_loop())
        try:
            await session.start(sdp)
        except Exception as exc:
            await session.close()
            if isinstance(exc, TryOnError):
                raise
            raise BadOffer(f"the offer's SDP cannot be used: {type(exc).__name__}: {exc}") from exc
        with self._lock:
            self._sessions[session.id] = session
        self.metrics.live_sessions.inc()
        log.info("live session %s opened (%d open)", session.id[:8], self.count())
        return session

    async def _close(self, session: Any, reason: str) -> None:
        with self._lock:
            known = self._sessions.pop(session.id, None) is not None
        if known:
            self.metrics.live_sessions.dec()
            log.info("live session %s closed: %s", session.id[:8], reason)
        await session.close()

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(WATCHDOG_PERIOD_S)
            now = time.monotonic()
            with self._lock:
                sessions = list(self._sessions.values())
            for s in sessions:
                reason = ""
                idle_limit = self.settings.idle_timeout_s if s.frames_in else max(self.settings.idle_timeout_s,
                                                                                  SETUP_GRACE_S)
                if now - s.last_frame_at > idle_limit:
                    reason = f"no frame for {idle_limit:g} s (the peer went away)"
                elif now - s.started_at > self.settings.max_duration_s:
                    reason = f"the maximum session duration ({self.settings.max_duration_s:g} s) is reached"
                elif s.failed:
                    reason = "the connection failed"
                if reason:
                    await self._close(s, reason)
            for s in sessions:
                if now - s.stats_at >= STATS_PERIOD_S:
                    s.send_stats(now)
