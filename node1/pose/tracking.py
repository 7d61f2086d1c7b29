"""BlazePose in tracking mode (mediapipe's ``static_image_mode=False``) for live video.

The detector runs only when there is no region of interest yet, or when the landmark model's presence
score on the tracked region drops to MIN_PRESENCE or below (tracking lost). Otherwise the ROI of frame t
comes from frame t-1's auxiliary landmarks (33 = hip-centre analogue, 34 = scale/rotation point) through
the same alignment-points rectangle the detector's keypoints 0/1 use (facts sheet §5: centre p33, side
2.5 |p34 - p33|, rotated so p34 is straight above) - as mediapipe's ``pose_landmarks_to_roi`` does,
with mediapipe's One-Euro filter on the two auxiliary landmarks.

One difference from mediapipe, for agreement with the still path: the landmark ROI is applied as a
*motion* of the detector's ROI (the shift, scale and rotation of the landmark rectangle since the
detection frame), not as an absolute rectangle. The landmark model is sensitive to its crop, and the
landmark rectangle of a person differs from the detector's by a few percent (more when the hips are
out of the frame), so mediapipe's tracked landmarks of a person standing still differ from its static
ones by up to 2-4 % of the image diagonal; with the anchored ROI a still person keeps the detector's
crop and the still path's landmarks, and a moving one is followed as before.

    tracker = PoseTracker()
    pose = tracker.estimate(frame, device)   # PoseResult (as estimate_pose's) or NoPersonDetected
    tracker.detected                         # True when this call ran the detector
    tracker.reset()                          # forget the ROI (the next call detects)
    OneEuroFilter(min_cutoff_hz, beta)       # the smoothing filter (also used on the keypoints)

Device work reuses the pipeline's stages ("prepare", "pose_crop", "pose_landmarks", "pose_mask"; the
detector path: "pose_prepare", "pose_detector"), so a tracked frame costs one landmark model run and
no detector run, locally or through gvirtus.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from node1.pose.errors import NoPersonDetected
from node1.pose.estimate import MIN_PRESENCE, PoseResult, _detections, as_rgb_uint8, resolve_runner
from node1.pose.geometry import Detection, Roi, pose_roi
from node1.pose.keypoints import to_body25, to_coco18

AUX_CENTRE, AUX_SCALE = 33, 34  # auxiliary landmarks that feed the next frame's ROI
# mediapipe's filter on the auxiliary landmarks (pose_landmark_cpu.pbtxt): a static person keeps the
# detector's ROI; a moving one moves it at once (beta scales the cutoff with the speed).
AUX_MIN_CUTOFF_HZ = 0.01
AUX_BETA = 10.0
DERIVATE_CUTOFF_HZ = 1.0
DEFAULT_FRAME_S = 1 / 30   # the time step assumed when a frame carries no usable timestamp


class OneEuroFilter:
    """The One-Euro filter (Casiez et al. 2012) as mediapipe's OneEuroFilter: a low-pass filter whose
    cutoff rises with the speed, so a still point stops jittering and a moving one lags little.

    __call__(x, t, value_scale): x any-shape float array, t seconds (must increase), value_scale
    multiplies the speed (mediapipe: 1 / object size, so beta is in object sizes per second).
    Returns the filtered array (float32, same shape).
    """

    def __init__(self, min_cutoff_hz: float, beta: float, derivate_cutoff_hz: float = DERIVATE_CUTOFF_HZ) -> None:
        self.min_cutoff_hz, self.beta, self.derivate_cutoff_hz = min_cutoff_hz, beta, derivate_cutoff_hz
        self.x: np.ndarray | None = None
        self.dx: np.ndarray | None = None
        self.t = 0.0

    @staticmethod
    def _alpha(rate_hz: float, cutoff_hz: np.ndarray | float) -> np.ndarray:
        tau = 1.0 / (2 * np.pi * np.asarray(cutoff_hz, dtype=np.float64))
        return np.asarray(1.0 / (1.0 + tau * rate_hz))

    def reset(self) -> None:
        self.x = self.dx = None

    def __call__(self, x: np.ndarray, t: float, value_scale: float = 1.0) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.x is None or self.x.shape != x.shape:
            self.x, self.dx, self.t = x, np.zeros_like(x), t
            return x.astype(np.float32)
        dt = t - self.t if t > self.t else DEFAULT_FRAME_S
        rate = 1.0 / dt
        dx = (x - self.x) * value_scale * rate
        a_d = self._alpha(rate, self.derivate_cutoff_hz)
        prev_dx = self.dx if self.dx is not None else np.zeros_like(x)
        self.dx = a_d * dx + (1 - a_d) * prev_dx
        a = self._alpha(rate, self.min_cutoff_hz + self.beta * np.abs(self.dx))
        self.x = a * x + (1 - a) * self.x
        self.t = t
        return self.x.astype(np.float32)


def roi_from_landmarks(landmarks: np.ndarray, image_wh: tuple[int, int]) -> Roi:
    """The next frame's ROI from this frame's landmarks.

    Args:
        landmarks: (39, >=2) float32 [x px, y px, ...] all landmarks of the landmark model (33 pose + aux).
        image_wh: (W, H) of the image the landmarks are in.
    Returns:
        the rotated square ROI (pixels, radians), computed exactly as the detector's.
    """
    w, h = image_wh
    kps = np.array([[landmarks[AUX_CENTRE, 0] / w, landmarks[AUX_CENTRE, 1] / h],
                    [landmarks[AUX_SCALE, 0] / w, landmarks[AUX_SCALE, 1] / h]], dtype=np.float32)
    return pose_roi(Detection(np.zeros(4, np.float32), kps, 1.0), (w, h))


def _moved(anchor: tuple[Roi, Roi], now: Roi) -> Roi:
    """The detector's ROI moved as the landmark ROI moved since the detection frame (shift, scale, turn)."""
    det, ref = anchor
    return Roi(det.cx + (now.cx - ref.cx), det.cy + (now.cy - ref.cy), det.size * now.size / max(ref.size, 1e-6),
               det.theta + (now.theta - ref.theta))


class PoseTracker:
    """Per-stream pose state (one per video stream; not thread-safe: one frame at a time)."""

    def __init__(self) -> None:
        self.roi: Roi | None = None
        self.aux_filter = OneEuroFilter(AUX_MIN_CUTOFF_HZ, AUX_BETA)
        self._anchor: tuple[Roi, Roi] | None = None  # (detector ROI, landmark ROI of that frame)
        self.t = 0.0
        self.detected = False
        self.detections = 0     # detector runs so far
        self.frames = 0

    def reset(self) -> None:
        self.roi = None
        self._anchor = None
        self.aux_filter.reset()

    def estimate(self, image: Any, device: Any = "cpu", t: float | None = None) -> PoseResult:
        """Pose of one video frame, tracking from the previous frame's landmarks.

        Args:
            image: (H, W, 3) uint8 RGB, short side >= 128 px.
            device: a local torch device or a gvirtus RemoteDevice (as estimate_pose's).
            t: the frame's time in seconds (its presentation time); default: one frame after the last.
        Raises:
            NoPersonDetected: tracking was lost and the detector finds nobody (the ROI is forgotten).
            InvalidImage; device errors pass through.
        """
        img = as_rgb_uint8(image)
        self.frames += 1
        self.t = t if t is not None else self.t + DEFAULT_FRAME_S
        self.detected = False
        if self.roi is not None:
            pose = self._landmarks(img, device, self.roi, 1.0, {})
            if pose is not None:
                return pose
        return self._detect_then_track(img, device)

    def _detect_then_track(self, img: np.ndarray, device: Any) -> PoseResult:
        h, w = img.shape[:2]
        run = resolve_runner(device)
        t0 = time.perf_counter()
        kept: list[Any] = []
        try:
            handle, det_in = run.call("pose_prepare", torch.from_numpy(img), keep=True)
            kept.extend((handle, det_in))
            rows = run.call("pose_detector", det_in)[0].numpy()
        finally:
            run.release(*kept)
        self.detections += 1
        self.detected = True
        people = _detections(rows, 4, (w, h))
        if not people:
            self.reset()
            raise NoPersonDetected("the pose detector found no candidate scoring 0.5 or more")
        best = max(people, key=lambda d: d.area)
        timings = {"detector": (time.perf_counter() - t0) * 1000.0}
        pose = self._landmarks(img, device, pose_roi(best, (w, h)), best.score, timings)
        if pose is None:
            raise NoPersonDetected(f"pose presence is not above {MIN_PRESENCE} in the detected region")
        return pose

    def _landmarks(self, img: np.ndarray, device: Any, roi: Roi, score: float,
                   timings: dict[str, float]) -> PoseResult | None:
        """Landmarks in `roi`; None (and the ROI forgotten) when the presence is too low."""
        h, w = img.shape[:2]
        run = resolve_runner(device)
        t0 = time.perf_counter()
        roi_t = roi.as_tensor()
        kept: list[Any] = []
        try:
            (handle,) = run.call("prepare", torch.from_numpy(img), keep=True)
            kept.append(handle)
            crop = run.call("pose_crop", handle, roi_t, keep=True)
            kept.extend(crop)
            # small outputs come back; the segmentation stays for the mask (per-output keep)
            landmarks, world, presence, seg = run.call("pose_landmarks", crop[0], roi_t,
                                                       keep=[False, False, False, True])
            kept.append(seg)
            (mask,) = run.call("pose_mask", handle, seg, roi_t)
        finally:
            run.release(*kept)
        if float(presence[0]) <= MIN_PRESENCE:
            self.reset()
            return None
        all_lm = landmarks.numpy()
        aux = all_lm[[AUX_CENTRE, AUX_SCALE], :2]
        smooth = all_lm[:, :2].copy()
        smooth[[AUX_CENTRE, AUX_SCALE]] = self.aux_filter(aux, self.t, 1.0 / max(roi.size, 1.0))
        lm_roi = roi_from_landmarks(smooth, (w, h))
        if self._anchor is None:
            self._anchor = (roi, lm_roi)
        self.roi = _moved(self._anchor, lm_roi)
        lm = all_lm[:33, :4].copy()
        lm[:, 2] /= w
        body25 = to_body25(lm, (w, h))
        timings["landmark"] = (time.perf_counter() - t0) * 1000.0
        return PoseResult(landmarks=lm, world_landmarks=world.numpy(), body25=body25, coco18=to_coco18(body25),
                          mask=mask.numpy(), presence=float(presence[0]), detection_score=score, num_people=1,
                          roi=roi, served_by=run.name, timings_ms=timings)
