"""The live mirror's per-frame path: one video frame in, the same frame dressed (or passed through) out.

    frame ─▶ fit to the stream size ─▶ scale (adaptive) ─▶ pose in TRACKING mode (node1.pose.tracking)
          ─▶ keypoints smoothed (One-Euro) ─▶ parsing ─▶ the runner's node-2 leg (Runner.dress)
          ─▶ the dressed pixels composited over the full-size frame ─▶ out

Everything device-side runs through the still path's runner (node1.tryon.runner.Runner): its
preprocessing device (gvirtus remote first, local CPU fallback) under the same lock as stills, and
its link to node 2 with the same contract and error codes. Frames where nobody is found pass through
unchanged with a small mirror-safe hint (an amber frame and a person outline); a frame the try-on
fails on passes through with a red frame. No frame is kept: each is dropped after it is returned.

Latency first: when the processing time exceeds the frame budget (1 / target fps) the processing
resolution steps down (SCALES) before the frame rate does; it steps back up when there is room.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from node1.pose import to_body25
from node1.pose.tracking import DeadBand, OneEuroFilter, PoseTracker
from node1.tryon import NoPersonInPhoto, TryOnError, TryOnFailed
from node1.tryon.preprocess import Preprocessed, last_launch

log = logging.getLogger("node1.live")

SCALES = (1.0, 0.75, 0.5)          # processing resolution steps, as a fraction of the stream's
MIN_PROCESS_SHORT_SIDE_PX = 128    # the pose models' minimum (node1.pose.MIN_SHORT_SIDE_PX)
LOAD_EMA = 0.3                     # weight of the newest frame in the processing-time average
STEP_DOWN_LOAD = 1.0               # average time / budget above which the scale steps down
STEP_UP_LOAD = 0.45                # ... below which it steps back up
SCALE_COOLDOWN_FRAMES = 8          # frames between two scale changes
# landmark smoothing as mediapipe's (pose_landmark_filtering.pbtxt): speeds in object sizes per second
LANDMARK_MIN_CUTOFF_HZ = 0.05
LANDMARK_BETA = 10.0             # mediapipe uses 80; 10 holds the garment steadier (tests/live)
LANDMARK_DEAD_BAND_PX = 1.0      # px: a smoothed landmark holds still until it moves this far (warp reuse)
LIVE_PARSE_LONG_SIDE = 160         # px: parsing grid (stills: 256); a 2-4 px cell at 320-640 px frames
FRAME_TRYON_TIMEOUT_S = 2.0        # the node-2 leg of one frame; a slower frame passes through
HINT_AMBER = (255, 176, 0)
ERROR_RED = (220, 40, 40)
HINT_BORDER_PX = 6


@dataclass
class FrameResult:
    """image: (H, W, 3) uint8 RGB at the input's size; status: "dressed" | "no_person" | "error";
    code: the error code when status is "error"; timings_ms: pose, parsing, tryon (node 2's leg), total;
    scale: the processing scale used; detected: the pose detector ran on this frame; garment: the catalog
    id this frame was dressed in (the one worn when its second half began)."""

    image: np.ndarray
    status: str
    scale: float
    detected: bool = False
    code: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    garment: str = ""


@dataclass
class Prepared:
    """A frame between the two halves of the path: the frame fitted (full) and as processed (work), the
    preprocessing (None when nobody was found or it failed: status / code say which)."""

    rgb_shape: tuple[int, ...]
    full: np.ndarray
    work: np.ndarray
    scale: float
    started: float
    pre: Preprocessed | None = None
    status: str = "dressed"
    code: str = ""
    detected: bool = False
    timings: dict[str, float] = field(default_factory=dict)


class ScaleController:
    """Chooses the processing scale from the measured processing time against the frame budget."""

    def __init__(self, budget_ms: float, scales: tuple[float, ...] = SCALES) -> None:
        self.budget_ms = budget_ms
        self.scales = scales
        self.index = 0
        self.load = 0.0
        self._since_change = 0

    @property
    def scale(self) -> float:
        return self.scales[self.index]

    def update(self, ms: float) -> None:
        """Record one frame's processing time (ms) and step the scale if due."""
        load = ms / self.budget_ms
        self.load = load if self._since_change == 0 else LOAD_EMA * load + (1 - LOAD_EMA) * self.load
        self._since_change += 1
        if self._since_change < SCALE_COOLDOWN_FRAMES:
            return
        if self.load > STEP_DOWN_LOAD and self.index < len(self.scales) - 1:
            self.index += 1
            self._since_change = 0
        elif self.load < STEP_UP_LOAD and self.index > 0:
            self.index -= 1
            self._since_change = 0


def fit_frame(rgb: np.ndarray, max_wh: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> the same, scaled down (area filter) to fit within max_wh = (W, H)."""
    h, w = rgb.shape[:2]
    s = min(max_wh[0] / w, max_wh[1] / h)
    if s >= 1.0:
        return rgb
    return cv2.resize(rgb, (max(2, round(w * s)), max(2, round(h * s))), interpolation=cv2.INTER_AREA)


def hint_overlay(rgb: np.ndarray, colour: tuple[int, int, int], person_icon: bool) -> np.ndarray:
    """A copy of `rgb` (H, W, 3) uint8 with a thin coloured frame and (optionally) a small person outline
    in the top centre: symmetric, so it reads the same in the page's mirrored view."""
    out = rgb.copy()
    h, w = out.shape[:2]
    b = HINT_BORDER_PX
    out[:b], out[-b:], out[:, :b], out[:, -b:] = colour, colour, colour, colour
    if person_icon:
        r = max(6, h // 40)
        cx, cy = w // 2, b + 3 * r
        icon = np.zeros((h, w), np.uint8)
        cv2.circle(icon, (cx, cy), r, 255, 2)
        cv2.ellipse(icon, (cx, cy + 4 * r), (2 * r, 2 * r), 0, 180, 360, 255, 2)
        out[(icon | icon[:, ::-1]) > 0] = colour
    return out


class FrameProcessor:
    """One live stream's per-frame state (tracker, filters, scale, garment). One frame at a time.

    Args:
        runner: node1.tryon.runner.Runner or PoolRunner (its catalog, the person tensors its engine reads,
            its preprocessing device and node-2 link).
        garment_id: the catalog garment to wear (UnknownGarment if not in the catalog).
        max_wh: the stream's processing size limit (W, H) (config live.width / live.height).
        target_fps: the frame budget the scale adapts to (config live.target_fps).
        parse_long_side: the human parsing's working grid, px (config live.parse_long_side; coarser than
            the stills' node1.parsing WORK_LONG_SIDE: the parse map is the costliest step of a frame).
    """

    def __init__(self, runner: Any, garment_id: str, max_wh: tuple[int, int], target_fps: float, *,
                 parse_long_side: int = LIVE_PARSE_LONG_SIDE) -> None:
        self.runner = runner
        self.max_wh = max_wh
        self.parse_long_side = parse_long_side
        self.with_mask = "person_mask" in runner.reads   # else the person mask stays on node 2
        self.tracker = PoseTracker()
        self.smoother = OneEuroFilter(LANDMARK_MIN_CUTOFF_HZ, LANDMARK_BETA)
        self.dead_band = DeadBand(LANDMARK_DEAD_BAND_PX)
        self._smoothed_wh = (0, 0)
        self.scaler = ScaleController(1000.0 / target_fps)
        self.wearing: tuple[str, Any] = ("", None)   # (catalog id, garment): one attribute, swapped whole
        self.set_garment(garment_id)

    @property
    def garment_id(self) -> str:
        return self.wearing[0]

    def set_garment(self, garment_id: str) -> None:
        """Wear another garment from the next frame on. Raises UnknownGarment (the catalog's)."""
        self.wearing = (garment_id, self.runner.catalog.garment(garment_id))

    def _preprocess(self, frame: np.ndarray, device: Any, t: float) -> Preprocessed:
        """Pose (tracking) + smoothed landmarks + mask and parsing of one frame on `device`
        (Runner.preprocess_frame): one device program, the frame crosses to the device once and the
        last launch (mask + parse map, node1.tryon.preprocess.MaskAndParse) reads it there."""
        h, w = frame.shape[:2]
        t0 = time.perf_counter()
        with self.tracker.step(frame, device, t) as step:
            t1 = time.perf_counter()
            lm = self._smooth(step.landmarks, t, (w, h))
            mask, parse = last_launch(step, lm, work_long_side=self.parse_long_side, with_mask=self.with_mask)
            pose = step.result(mask, last_stage="mask_parse")
        t2 = time.perf_counter()
        return Preprocessed(image=frame, landmarks=lm, body25=to_body25(lm, (w, h)), pose_json={},
                            parse=parse, person_mask=pose.mask, device=pose.served_by,
                            timings_ms={"pose": (t1 - t0) * 1000.0, "parse": (t2 - t1) * 1000.0})

    def _smooth(self, landmarks: np.ndarray, t: float, wh: tuple[int, int]) -> np.ndarray:
        """(33, 4) float32 landmarks -> the same, x and y One-Euro filtered (speeds in body sizes per
        second), held within a dead band (a still shopper's stay bit for bit the same: node 2 reuses the
        garment's warp) and kept within a frame's width / height beyond the edges."""
        w, h = wh
        if wh != self._smoothed_wh:   # the processing scale changed: pixels mean something else
            self.smoother.reset()
            self.dead_band.reset()
            self._smoothed_wh = wh
        lm = landmarks.copy()
        span = lm[lm[:, 3] > 0.5, :2] if (lm[:, 3] > 0.5).sum() >= 2 else lm[:, :2]
        size = float(np.mean(span.max(axis=0) - span.min(axis=0)))
        lm[:, :2] = self.dead_band(self.smoother(lm[:, :2], t, 1.0 / max(size, 1.0)))
        lm[:, 0] = np.clip(lm[:, 0], -w, 2 * w)
        lm[:, 1] = np.clip(lm[:, 1], -h, 2 * h)
        return np.ascontiguousarray(lm, dtype=np.float32)

    def process(self, rgb: np.ndarray, t: float) -> FrameResult:
        """One frame: (H, W, 3) uint8 RGB, t its presentation time in seconds -> FrameResult (same size).
        The same as finish(prepare(rgb, t)); a session runs the two halves on two threads."""
        return self.finish(self.prepare(rgb, t))

    def prepare(self, rgb: np.ndarray, t: float) -> Prepared:
        """The first half (on the preprocessing device): fit, scale, pose tracking, smoothing, parsing."""
        t0 = time.perf_counter()
        full = fit_frame(rgb, self.max_wh)
        scale = self.scaler.scale
        h, w = full.shape[:2]
        if min(h, w) * scale < MIN_PROCESS_SHORT_SIDE_PX:
            scale = 1.0
        work = full if scale == 1.0 else cv2.resize(full, (round(w * scale) // 2 * 2, round(h * scale) // 2 * 2),
                                                    interpolation=cv2.INTER_AREA)

        def live_frame(f: np.ndarray, device: Any) -> Preprocessed:  # named: the device's log says what ran
            return self._preprocess(f, device, t)

        prepared = Prepared(rgb_shape=rgb.shape, full=full, work=work, scale=scale, started=t0)
        try:
            prepared.pre = self.runner.preprocess_frame(live_frame, work)
            prepared.timings.update(pose=prepared.pre.timings_ms["pose"], parsing=prepared.pre.timings_ms["parse"])
        except NoPersonInPhoto:
            self.smoother.reset()
            self.dead_band.reset()
            prepared.status = "no_person"
        except TryOnError as exc:
            log.warning("live frame not preprocessed (%s): %s", exc.code, exc)
            prepared.status, prepared.code = "error", exc.code
        prepared.detected = self.tracker.detected
        prepared.timings["prepare"] = (time.perf_counter() - t0) * 1000.0
        return prepared

    def finish(self, p: Prepared) -> FrameResult:
        """The second half: the runner's node-2 leg and the composite (or the pass-through with a hint)."""
        t1 = time.perf_counter()
        timings = dict(p.timings)
        status, code = p.status, p.code
        image = p.full
        garment_id, garment = self.wearing   # one read: a switch lands between frames, never inside one
        if p.pre is not None:
            try:
                dressed = self.runner.dress(p.pre, garment, FRAME_TRYON_TIMEOUT_S)   # raw pixels back
                if dressed.image is None:
                    raise TryOnFailed("node 2 returned no pixels for a live frame")
                timings["tryon"] = dressed.transfer_ms + dressed.tryon_ms
                image, status = _composite(p.full, p.work, dressed.image), "dressed"
            except TryOnError as exc:
                log.warning("live frame not dressed (%s): %s", exc.code, exc)
                status, code = "error", exc.code
        if status == "no_person":
            image = hint_overlay(p.full, HINT_AMBER, True)
        elif status == "error":
            image = hint_overlay(p.full, ERROR_RED, False)
        if image.shape != p.rgb_shape:
            image = cv2.resize(image, (p.rgb_shape[1], p.rgb_shape[0]), interpolation=cv2.INTER_LINEAR)
        timings["total"] = (time.perf_counter() - p.started) * 1000.0
        # the slower half sets the frame interval when the halves overlap (two threads)
        self.scaler.update(max(timings["prepare"], (time.perf_counter() - t1) * 1000.0))
        return FrameResult(image=image, status=status, scale=p.scale, detected=p.detected, code=code,
                           timings_ms=timings, garment=garment_id)


def _composite(full: np.ndarray, work: np.ndarray, dressed: np.ndarray) -> np.ndarray:
    """The engine's result drawn over the full-size frame only where it changed something: what the
    engine did not redraw (the face, the background) keeps the camera's own full-resolution pixels.

    full: (H, W, 3) uint8; work: (h, w, 3) uint8, the frame as processed; dressed: the engine's result
    for `work` (any size; resized to work's). Returns (H, W, 3) uint8.
    """
    hw, ww = work.shape[:2]
    if dressed.shape[:2] != (hw, ww):
        dressed = cv2.resize(dressed, (ww, hw), interpolation=cv2.INTER_AREA)
    if work is full:
        return dressed
    changed = cv2.absdiff(dressed, work).max(axis=2)
    rows, cols = np.nonzero(changed.max(axis=1))[0], np.nonzero(changed.max(axis=0))[0]
    out = full.copy()
    if not len(rows):
        return out
    h, w = full.shape[:2]
    sy, sx = h / hw, w / ww   # the changed box, one source pixel of margin, in full-size pixels
    y0, y1 = max(0, int((rows[0] - 1) * sy)), min(h, int(np.ceil((rows[-1] + 2) * sy)))
    x0, x1 = max(0, int((cols[0] - 1) * sx)), min(w, int(np.ceil((cols[-1] + 2) * sx)))
    alpha = cv2.resize((changed > 0).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)[y0:y1, x0:x1]
    big = cv2.resize(dressed, (w, h), interpolation=cv2.INTER_LINEAR)[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = cv2.blendLinear(np.ascontiguousarray(big), np.ascontiguousarray(full[y0:y1, x0:x1]),
                                        np.ascontiguousarray(alpha), np.ascontiguousarray(1.0 - alpha))
    return out
