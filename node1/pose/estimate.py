"""The BlazePose two-stage pipeline (mediapipe's legacy ``solutions.pose``, static image mode), plus the
face detector and selfie segmentation the human-parsing step builds on.

Device work (crops, models, decoding, refinement, projection, mask warp) runs in the stage modules on
the chosen runner; the host only does the tiny NMS / ROI math and the OpenPose conversions.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from node1.pose.errors import InvalidImage, NoPersonDetected
from node1.pose.geometry import Detection, Roi, pose_roi, remove_letterbox, weighted_nms
from node1.pose.keypoints import to_body25, to_coco18
from node1.pose.runners import LocalRunner

log = logging.getLogger("node1.pose")

MIN_SHORT_SIDE_PX = 128
MIN_DETECTION_CONFIDENCE = 0.5
MIN_PRESENCE = 0.5  # mediapipe's min_tracking_confidence: the pose-presence gate, also in static mode
NMS_IOU = 0.3


@dataclass
class PoseResult:
    """One person's pose.

    landmarks: (33, 4) float32 [x px, y px, z, visibility] (pixel-index coords; z as mediapipe's, normalised)
    world_landmarks: (33, 3) float32 metres (mediapipe's world landmarks)
    body25: (25, 3) float32 OpenPose BODY_25 [x px, y px, c]; missing = 0, 0, 0
    coco18: (18, 3) float32 OpenPose COCO-18, same convention
    mask: (H, W) uint8 person segmentation from the landmark model, 255 = person (always from estimate_pose;
        None from a PoseStep whose caller left it on the device: node1.tryon.preprocess)
    """

    landmarks: np.ndarray
    world_landmarks: np.ndarray
    body25: np.ndarray
    coco18: np.ndarray
    mask: np.ndarray | None
    presence: float
    detection_score: float
    num_people: int
    roi: Roi
    served_by: str
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Face:
    """A face: box (xmin, ymin, width, height) px, keypoints (6, 2) px [right eye, left eye, nose tip,
    mouth centre, right ear tragion, left ear tragion] (the person's right/left), score in [0, 1]."""

    box_xywh: np.ndarray
    keypoints: np.ndarray
    score: float


def as_rgb_uint8(image: Any) -> np.ndarray:
    """Validate and convert a photo to a contiguous (H, W, 3) uint8 RGB array.

    Accepts (H, W) grey, (H, W, 1), (H, W, 3) RGB or (H, W, 4) RGBA uint8 arrays, or a PIL image.
    Raises InvalidImage naming what is wrong (dtype, shape, size).
    """
    if not isinstance(image, np.ndarray) and hasattr(image, "convert"):
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise InvalidImage(f"expected an RGB image as a numpy array or PIL image, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidImage(f"expected uint8 pixels, got dtype {image.dtype}")
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise InvalidImage(f"expected shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    if min(image.shape[:2]) < MIN_SHORT_SIDE_PX:
        raise InvalidImage(f"image is {image.shape[1]}x{image.shape[0]} px; the short side must be at least "
                           f"{MIN_SHORT_SIDE_PX} px")
    image = np.ascontiguousarray(image)
    return image if image.flags.writeable else image.copy()  # torch.from_numpy wants writable memory


def _detections(rows: np.ndarray, n_kp: int, image_wh: tuple[int, int]) -> list[Detection]:
    """Detector rows (K, 5 + 2P) [score, xc, yc, w, h, kps] -> NMS'd detections in normalised image coords."""
    rows = rows[rows[:, 0] >= MIN_DETECTION_CONFIDENCE]
    rows = rows[(rows[:, 3] >= 0) & (rows[:, 4] >= 0) & np.isfinite(rows).all(axis=1)]
    if not len(rows):
        return []
    xc, yc, w, h = rows[:, 1], rows[:, 2], rows[:, 3], rows[:, 4]
    boxes = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=1)
    kps = rows[:, 5:5 + 2 * n_kp].reshape(-1, n_kp, 2)
    return [remove_letterbox(d, image_wh) for d in weighted_nms(rows[:, 0], boxes, kps, NMS_IOU)]


def resolve_runner(device: Any) -> Any:
    """The runner for ``device``: a local torch device (str / torch.device, cached per process), a gvirtus
    ``RemoteDevice`` (one RemoteRunner per device object), or a runner itself."""
    if isinstance(device, (str, torch.device)):
        key = str(torch.device(device))
        with _runners_lock:
            if key not in _local_runners:
                _local_runners[key] = LocalRunner(key)
            return _local_runners[key]
    if hasattr(device, "call") and hasattr(device, "release"):
        return device
    from node1.pose.remote import RemoteRunner

    with _runners_lock:
        runner = _remote_runners.get(device)
        if runner is None:
            runner = _remote_runners[device] = RemoteRunner(device)
        return runner


_runners_lock = threading.Lock()
_local_runners: dict[str, LocalRunner] = {}
# one RemoteRunner (its registered modules) per live RemoteDevice; dropped with the device
_remote_runners: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


# the stages of a pose step, as PoseResult.timings_ms names them
STEP_STAGES = ("detector_input", "detector", "crop", "landmark")


class PoseStep:
    """estimate_pose's device work through the landmark model, with the photo left on the device for a
    last stage that reads it there: the photo crosses to the device once for everything done with it.

        with PoseStep(image, device) as step:      # runs the step; NoPersonDetected as estimate_pose
            (mask,) = step.call("pose_mask", step.photo, step.seg, step.roi, free=(step.photo, step.seg))
            pose = step.result(mask)               # a PoseResult, as estimate_pose returns it
        # leaving the block frees whatever the step still keeps on the device

    After entering: ``photo`` (the (H, W, 3) uint8 photo on the device), ``seg`` ((1, 1, 256, 256) float32
    person probability of the ROI crop, on the device), ``roi`` ((4,) float32 [cx, cy, side, theta] host
    tensor), ``landmarks`` ((33, 4) float32 host [x px, y px, z, visibility], as PoseResult.landmarks).
    ``call(stage, *inputs, keep=False)`` runs a stage (a name, or a node1.pose.runners.StageFactory) on the
    same runner.
    """

    def __init__(self, image: Any, device: Any = "cpu") -> None:
        self.image = as_rgb_uint8(image)
        self.run = resolve_runner(device)
        self._kept: list[Any] = []
        self._marks = [time.perf_counter()]

    def __enter__(self) -> PoseStep:
        try:
            self._locate()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _mark(self) -> None:
        self._marks.append(time.perf_counter())

    def _locate(self) -> None:
        h, w = self.image.shape[:2]
        run = self.run
        photo, det_in = run.call("pose_prepare", torch.from_numpy(self.image), keep=True)  # upload + letterbox
        self._kept.extend((photo, det_in))
        self._mark()
        rows = self.call("pose_detector", det_in, free=(det_in,))[0].numpy()
        self._mark()
        self.people = _detections(rows, 4, (w, h))
        if not self.people:
            raise NoPersonDetected("the pose detector found no candidate scoring 0.5 or more")
        self.best = max(self.people, key=lambda d: d.area)
        roi = pose_roi(self.best, (w, h)).as_tensor()
        crop = run.call("pose_crop", photo, roi, keep=True)
        self._kept.extend(crop)
        self._mark()
        # the small results come back now; the segmentation stays for the mask
        landmarks, world, presence, seg = self.call("pose_landmarks", crop[0], roi, keep=[False, False, False, True],
                                                    free=crop)
        self._kept.append(seg)
        self._mark()
        self.presence = float(presence[0])
        if self.presence <= MIN_PRESENCE:
            raise NoPersonDetected(f"pose presence {self.presence:.2f} is not above {MIN_PRESENCE}")
        lm = landmarks.numpy()[:33, :4].copy()
        lm[:, 2] /= w
        self.photo, self.seg, self.roi, self.landmarks, self.world = photo, seg, roi, lm, world.numpy()

    def call(self, stage: Any, *inputs: Any, keep: Any = False, free: Sequence[Any] = ()) -> tuple[Any, ...]:
        """Run a stage on this step's runner (see node1.pose.runners). ``free``: what the step kept that this
        call reads last (e.g. ``(step.photo, step.seg)`` for the last stage): the device frees it after the
        call, with no round trip of its own, and leaving the step has nothing more to free."""
        self._kept = [k for k in self._kept if not any(k is f for f in free)]   # identity: tensors have no ==
        return self.run.call(stage, *inputs, keep=keep, free=free)

    def result(self, mask: Any, last_stage: str = "mask") -> PoseResult:
        """The PoseResult of this step, with ``mask`` ((H, W) uint8 person mask, 255 = person; a host tensor or
        array; None when the caller left it on the device) from the caller's last stage, whose time is
        reported as ``last_stage``."""
        self._mark()
        h, w = self.image.shape[:2]
        body25 = to_body25(self.landmarks, (w, h))
        self._mark()
        if len(self.people) > 1:
            log.info("pose: %d people detected, using the largest", len(self.people))
        names = (*STEP_STAGES, last_stage, "post")
        marks = self._marks
        return PoseResult(
            landmarks=self.landmarks, world_landmarks=self.world, body25=body25, coco18=to_coco18(body25),
            mask=None if mask is None else np.asarray(mask), presence=self.presence, detection_score=self.best.score,
            num_people=len(self.people), roi=Roi(*(float(v) for v in self.roi)), served_by=self.run.name,
            timings_ms={k: (b - a) * 1000 for k, a, b in zip(names, marks[:-1], marks[1:], strict=True)},
        )

    def close(self) -> None:
        """Free what the step kept on the device (idempotent)."""
        kept, self._kept = self._kept, []
        self.run.release(*kept)


def estimate_pose(image: Any, device: Any = "cpu") -> PoseResult:
    """33 BlazePose landmarks, OpenPose BODY_25 / COCO-18 and the person mask of the largest person.

    Args:
        image: (H, W, 3) uint8 RGB (grey / RGBA / PIL accepted, see :func:`as_rgb_uint8`); short side >= 128 px.
        device: a local torch device ("cpu", "cuda:0", torch.device) or a gvirtus ``RemoteDevice``.
    Raises:
        InvalidImage: not an RGB-convertible image or too small.
        NoPersonDetected: nobody in the photo ("no person detected — step into the frame").
        Errors of the device (e.g. gvirtus.RemoteDeviceLost) pass through; see node1.tryon.fallback for fallback.
    """
    with PoseStep(image, device) as step:
        (mask,) = step.call("pose_mask", step.photo, step.seg, step.roi, free=(step.photo, step.seg))
        return step.result(mask.numpy())


def detect_faces(image: Any, device: Any = "cpu") -> list[Face]:
    """Short-range face detections (mediapipe's FaceDetection(model_selection=0)), highest score first.

    Returns an empty list when there is no face (that is not an error here).
    """
    img = as_rgb_uint8(image)
    h, w = img.shape[:2]
    run = resolve_runner(device)
    kept: list[Any] = []
    try:
        (handle,) = run.call("prepare", torch.from_numpy(img), keep=True)
        kept.append(handle)
        x = run.call("face_input", handle, keep=True)
        kept.extend(x)
        rows = run.call("face_detector", *x)[0].numpy()
    finally:
        run.release(*kept)
    faces = []
    for d in _detections(rows, 6, (w, h)):
        box = d.box * (w, h, w, h)
        faces.append(Face(np.array([box[0], box[1], box[2] - box[0], box[3] - box[1]], dtype=np.float32),
                          (d.keypoints * (w, h)).astype(np.float32), d.score))
    return sorted(faces, key=lambda f: -f.score)


def segment_person(image: Any, device: Any = "cpu") -> np.ndarray:
    """Selfie-segmentation person mask (mediapipe's general 256x256 model): (H, W) uint8, 255 = person."""
    img = as_rgb_uint8(image)
    run = resolve_runner(device)
    kept: list[Any] = []
    try:
        (handle,) = run.call("prepare", torch.from_numpy(img), keep=True)
        kept.append(handle)
        x = run.call("selfie_input", handle, keep=True)
        kept.extend(x)
        prob = run.call("selfie", *x, keep=True)
        kept.extend(prob)
        return run.call("selfie_resize", handle, *prob)[0].numpy()
    finally:
        run.release(*kept)
