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

And the tracked ROI is held while the landmarks' ROI stays within ROI_HOLD_* of it (as mediapipe's
RoiTrackingCalculator does for hands): the landmark model follows a swaying person inside a fixed
crop. Without it a crop that moved with every frame's sensor noise fed that noise back and drifted.

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

from typing import Any

import numpy as np
import torch

from node1.pose.errors import NoPersonDetected
from node1.pose.estimate import MIN_PRESENCE, PoseResult, PoseStep, _detections
from node1.pose.geometry import Detection, Roi, pose_roi

AUX_CENTRE, AUX_SCALE = 33, 34  # auxiliary landmarks that feed the next frame's ROI
# mediapipe's filter on the auxiliary landmarks (pose_landmark_cpu.pbtxt): a static person keeps the
# detector's ROI; a moving one moves it at once (beta scales the cutoff with the speed).
AUX_MIN_CUTOFF_HZ = 0.01
AUX_BETA = 10.0
DERIVATE_CUTOFF_HZ = 1.0
DEFAULT_FRAME_S = 1 / 30   # the time step assumed when a frame carries no usable timestamp
# the tracked ROI is held while the landmarks' ROI stays this close to it (as mediapipe's
# RoiTrackingCalculator holds a hand's): the landmark model follows a person inside a fixed crop,
# and a crop that moved with every frame's noise drifted (a still person's tracked ROI grew 19 %
# in 20 frames of +-2 grey-level sensor noise, and the shoulders wandered 46 px)
ROI_HOLD_SHIFT = 0.03       # x the ROI's side: centre moved less than this
ROI_HOLD_SCALE = 0.05       # relative change of the side less than this
ROI_HOLD_TURN_RAD = 0.05    # rotation less than this (about 3 degrees)


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


class DeadBand:
    """Holds each point where it was until it moves more than `band` (its units) from there: a still
    shopper's smoothed landmarks then stay bit for bit the same from frame to frame, so node 2 can reuse
    the garment's warp (viton.geometric.memo), at the cost of at most `band` of lag.

    __call__(points): (N, 2) float (x, y) array -> (N, 2) float32, each row the held one or the new one.
    """

    def __init__(self, band: float) -> None:
        self.band = band
        self.held: np.ndarray | None = None

    def reset(self) -> None:
        self.held = None

    def __call__(self, points: np.ndarray) -> np.ndarray:
        p = np.asarray(points, dtype=np.float32)
        if self.held is None or self.held.shape != p.shape:
            self.held = p.copy()
            return p.copy()
        moved = np.hypot(p[:, 0] - self.held[:, 0], p[:, 1] - self.held[:, 1]) > self.band
        self.held[moved] = p[moved]
        return self.held.copy()


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


def _holds(held: Roi, new: Roi) -> bool:
    """The held ROI still serves: `new` is within the ROI_HOLD_* tolerances of it."""
    return (float(np.hypot(new.cx - held.cx, new.cy - held.cy)) < ROI_HOLD_SHIFT * held.size
            and abs(new.size / max(held.size, 1e-6) - 1.0) < ROI_HOLD_SCALE
            and abs((new.theta - held.theta + np.pi) % (2 * np.pi) - np.pi) < ROI_HOLD_TURN_RAD)


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
        with self.step(image, device, t) as step:
            (mask,) = step.call("pose_mask", step.photo, step.seg, step.roi, free=(step.photo, step.seg))
            return step.result(mask.numpy())

    def step(self, image: Any, device: Any = "cpu", t: float | None = None) -> TrackStep:
        """The same device work as estimate's, as a node1.pose.PoseStep that leaves the frame and the
        segmentation on the device for the caller's last stage (the live mirror's mask + parsing):

            with tracker.step(frame, device, t) as step:
                mask, parse = step.call(stage, step.photo, step.seg, step.roi, landmarks,
                                        free=(step.photo, step.seg))
                pose = step.result(mask)
        """
        return TrackStep(self, image, device, t)

    def follow(self, roi: Roi, all_landmarks: np.ndarray, image_wh: tuple[int, int]) -> None:
        """Move the tracked ROI as this frame's landmarks moved: (39, >=2) [x px, y px, ...] all of them."""
        smooth = all_landmarks[:, :2].copy()
        aux = smooth[[AUX_CENTRE, AUX_SCALE]]
        smooth[[AUX_CENTRE, AUX_SCALE]] = self.aux_filter(aux, self.t, 1.0 / max(roi.size, 1.0))
        lm_roi = roi_from_landmarks(smooth, image_wh)
        if self._anchor is None:
            self._anchor = (roi, lm_roi)
        moved = _moved(self._anchor, lm_roi)
        if self.roi is None or not _holds(self.roi, moved):
            self.roi = moved


class TrackStep(PoseStep):
    """PoseTracker.step's PoseStep: the landmark model on the tracked region, the detector only when
    there is none or the presence on it drops (then the region is forgotten and the detector decides)."""

    def __init__(self, tracker: PoseTracker, image: Any, device: Any, t: float | None) -> None:
        super().__init__(image, device)
        self.tracker = tracker
        tracker.frames += 1
        tracker.t = t if t is not None else tracker.t + DEFAULT_FRAME_S
        tracker.detected = False

    def _locate(self) -> None:
        tr, run = self.tracker, self.run
        h, w = self.image.shape[:2]
        if tr.roi is not None:
            (photo,) = run.call("prepare", torch.from_numpy(self.image), keep=True)
            self._kept.append(photo)
            self._marks.extend([self._marks[-1]] * 2)       # no detector input, no detector
            tracked = Detection(np.zeros(4, np.float32), np.zeros((0, 2)), 1.0)   # one person, score 1
            self.people = [tracked]
            if self._landmarks(photo, tr.roi, tracked):
                return
            tr.reset()
            self.close()
            self._marks = self._marks[:1]
        photo, det_in = run.call("pose_prepare", torch.from_numpy(self.image), keep=True)
        self._kept.extend((photo, det_in))
        self._mark()
        rows = self.call("pose_detector", det_in, free=(det_in,))[0].numpy()
        self._mark()
        tr.detections += 1
        tr.detected = True
        people = _detections(rows, 4, (w, h))
        if not people:
            tr.reset()
            raise NoPersonDetected("the pose detector found no candidate scoring 0.5 or more")
        best = max(people, key=lambda d: d.area)
        self.people = people
        if not self._landmarks(photo, pose_roi(best, (w, h)), best):
            tr.reset()
            raise NoPersonDetected(f"pose presence is not above {MIN_PRESENCE} in the detected region")

    def _landmarks(self, photo: Any, roi: Roi, best: Detection) -> bool:
        """The landmark model on `roi` of the kept photo; False when the presence is too low."""
        roi_t = roi.as_tensor()
        crop = self.run.call("pose_crop", photo, roi_t, keep=True)
        self._kept.extend(crop)
        self._mark()
        # the small results come back; the segmentation stays for the caller's last stage
        landmarks, world, presence, seg = self.call("pose_landmarks", crop[0], roi_t,
                                                    keep=[False, False, False, True], free=crop)
        self._kept.append(seg)
        self._mark()
        self.presence = float(presence[0])
        if self.presence <= MIN_PRESENCE:
            return False
        h, w = self.image.shape[:2]
        all_lm = landmarks.numpy()
        self.tracker.follow(roi, all_lm, (w, h))
        lm = all_lm[:33, :4].copy()
        lm[:, 2] /= w
        self.best = best
        self.photo, self.seg, self.roi, self.landmarks, self.world = photo, seg, roi_t, lm, world.numpy()
        return True
