"""Pose preprocessing: mediapipe's pretrained BlazePose (plus its face detector and selfie segmentation)
as torch modules, on a local device or on node 2's GPU through gvirtus.

Public face:
    estimate_pose(image, device="cpu") -> PoseResult
        image: (H, W, 3) uint8 RGB (grey/RGBA/PIL accepted), short side >= 128 px.
        device: "cpu" / "cuda:0" / torch.device, or a gvirtus RemoteDevice.
        PoseResult: landmarks (33, 4) [x px, y px, z, visibility], world_landmarks (33, 3) m,
                    body25 (25, 3) / coco18 (18, 3) OpenPose [x, y, c] (missing = 0, 0, 0),
                    mask (H, W) uint8 person mask (255 = person), presence, detection_score,
                    num_people (the largest person is used), roi, served_by, timings_ms.
    PoseStep(image, device)          the same step as a context manager that leaves the photo on the device
                                     for one more stage of the caller's (node1.tryon.preprocess: mask + parsing)
    PoseMask                         the mask stage module (image, seg, roi) -> (H, W) uint8, for such a stage
    detect_faces(image, device="cpu") -> list[Face]     short-range face detector; Face.box_xywh (4,) px,
                                                        Face.keypoints (6, 2) px, Face.score; [] if none
    segment_person(image, device="cpu") -> (H, W) uint8 selfie-segmentation person mask, 255 = person
    to_body25, to_coco18, openpose_json, write_openpose_json   OpenPose outputs
    BLAZEPOSE_NAMES, BODY25_NAMES, COCO18_NAMES
    errors: PoseError, NoPersonDetected, InvalidImage, DeviceUnavailable
"""

from __future__ import annotations

from node1.pose.errors import DeviceUnavailable, InvalidImage, NoPersonDetected, PoseError
from node1.pose.estimate import (
    Face,
    PoseResult,
    PoseStep,
    as_rgb_uint8,
    detect_faces,
    estimate_pose,
    segment_person,
)
from node1.pose.keypoints import (
    BLAZEPOSE_NAMES,
    BODY25_NAMES,
    COCO18_NAMES,
    openpose_json,
    to_body25,
    to_coco18,
    write_openpose_json,
)
from node1.pose.stages import PoseMask

__all__ = [
    "BLAZEPOSE_NAMES", "BODY25_NAMES", "COCO18_NAMES", "DeviceUnavailable", "Face",
    "InvalidImage", "NoPersonDetected", "PoseError", "PoseMask", "PoseResult", "PoseStep",
    "as_rgb_uint8", "detect_faces", "estimate_pose", "openpose_json", "segment_person",
    "to_body25", "to_coco18", "write_openpose_json",
]
