"""The face, found by the short-range face detector on a head crop placed by the pose landmarks.

Branch-free torch (traces with make_fx): the detector always runs, and `valid` says whether its
best anchor scored >= FACE_SCORE_THRESHOLD. Detection decoding follows mediapipe's short-range
face detector (896 SSD anchors, XYWH regressors scaled by 128, 6 keypoints), with the weighted
non-max suppression reduced to its first cluster: the score-weighted mean of the anchors that
overlap the best one by IoU > 0.3 (one face per head crop).
"""

from __future__ import annotations

import math

import torch

from node1.parsing.geometry import EPS

FACE_INPUT = 128                   # detector input side, px
FACE_SCORE_THRESHOLD = 0.5         # mediapipe's min_detection_confidence default
NMS_IOU = 0.3                      # overlap that joins an anchor to the best one's cluster
HEAD_CROP_SCALE = 2.6              # head crop side / estimated face size
FALLBACK_VISIBILITY = 0.9          # pose nose + eyes visibility needed to draw a face without a detection

# BlazePose landmark ids used here
NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR, MOUTH_LEFT, MOUTH_RIGHT = 0, 2, 5, 7, 8, 9, 10
LEFT_SHOULDER, RIGHT_SHOULDER = 11, 12


def face_anchors() -> torch.Tensor:
    """(896, 2) float32 anchor centres (x, y) in [0, 1] of the short-range face detector.

    Strides [8, 16, 16, 16] on a 128 input, 2 anchors per cell at stride 8 and 6 at stride 16
    (layers with equal strides merge); order: layer group -> y -> x -> anchor.
    """
    rows = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = FACE_INPUT // stride
        ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        c = torch.stack([(xs + 0.5) / n, (ys + 0.5) / n], dim=-1).reshape(-1, 1, 2)
        rows.append(c.expand(-1, per_cell, 2).reshape(-1, 2))
    return torch.cat(rows).float()


def head_box(landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Square head crop from the pose's face landmarks.

    Args:
        landmarks: (33, 4) float32 BlazePose landmarks (x px, y px, z, visibility).
    Returns:
        centre (2,) px and side () px of an axis-aligned square around the head.
    """
    face_pts = landmarks[:11, :2]
    centre = face_pts.mean(dim=0)
    ears = torch.linalg.vector_norm(landmarks[LEFT_EAR, :2] - landmarks[RIGHT_EAR, :2])
    eyes = 0.5 * (landmarks[LEFT_EYE, :2] + landmarks[RIGHT_EYE, :2])
    mouth = 0.5 * (landmarks[MOUTH_LEFT, :2] + landmarks[MOUTH_RIGHT, :2])
    eye_mouth = torch.linalg.vector_norm(eyes - mouth)
    shoulders = torch.linalg.vector_norm(landmarks[LEFT_SHOULDER, :2] - landmarks[RIGHT_SHOULDER, :2])
    size = torch.maximum(torch.maximum(1.1 * ears, 2.2 * eye_mouth), 0.3 * shoulders).clamp_min(8.0)
    return centre, HEAD_CROP_SCALE * size


def sample_bilinear_u8(image: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of a uint8 image at pixel-index points; outside the image reads 0.

    Gathers 4 neighbours per point (index_select of 3-byte rows), so a small crop never converts the whole
    photo to float.
    Args:
        image: (H, W, 3) uint8 or float32 with values in [0, 255] (the photo's own layout).
        x, y: (N,) float32 pixel-index coordinates.
    Returns:
        (3, N) float32 in [0, 255].
    """
    H, W, _ = image.shape
    flat = image.reshape(H * W, 3)
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x - x0, y - y0
    out = torch.zeros(3, x.shape[0], dtype=torch.float32, device=image.device)
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        inside = ((xi >= 0) & (xi <= W - 1) & (yi >= 0) & (yi <= H - 1)).float()
        idx = (yi.clamp(0, H - 1) * W + xi.clamp(0, W - 1)).long()
        out = out + flat.index_select(0, idx).t().float() * (wgt * inside)[None]
    return out


def detect_face(image: torch.Tensor, landmarks: torch.Tensor, detector: torch.nn.Module,
                anchors: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run the face detector on the head crop and return the best face, in photo pixels.

    Args:
        image: (H, W, 3) RGB photo, uint8 or float32 in [0, 255].
        landmarks: (33, 4) float32 pose landmarks in photo pixels.
        detector: face_detection_short_range as an NCHW torch module ((1, 3, 128, 128) in [-1, 1]).
        anchors: (896, 2) from `face_anchors()`.
    Returns:
        score (), valid () bool, centre (2,), size (2,) box width/height, angle () roll in radians
        (0 when the eyes are level), keypoints (6, 2): right eye, left eye, nose tip, mouth centre,
        right ear, left ear (the detector's own order). All px, float32.
    """
    centre, side = head_box(landmarks)
    t = (torch.arange(FACE_INPUT, device=image.device, dtype=torch.float32) / FACE_INPUT - 0.5)
    xs = (centre[0] + t * side)[None, :].expand(FACE_INPUT, FACE_INPUT).reshape(-1)
    ys = (centre[1] + t * side)[:, None].expand(FACE_INPUT, FACE_INPUT).reshape(-1)
    crop = sample_bilinear_u8(image, xs, ys).reshape(1, 3, FACE_INPUT, FACE_INPUT) * (2.0 / 255.0) - 1.0
    regressors, logits = detector(crop)
    reg = regressors[0] / FACE_INPUT                                   # (896, 16), crop-normalised
    scores = torch.sigmoid(logits[0, :, 0].clamp(-100.0, 100.0))       # (896,)
    cxy = reg[:, :2] + anchors
    wh = reg[:, 2:4]
    kps = reg[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
    lo, hi = cxy - 0.5 * wh, cxy + 0.5 * wh
    best = torch.argmax(scores).reshape(1)          # index_select, not item(): stays traceable
    top_score = scores.index_select(0, best)[0]
    inter = (torch.minimum(hi, hi.index_select(0, best)) - torch.maximum(lo, lo.index_select(0, best))
             ).clamp_min(0.0).prod(dim=1)
    area = wh.prod(dim=1)
    iou = inter / (area + area.index_select(0, best) - inter + EPS)
    wgt = scores * ((iou > NMS_IOU) & (scores >= FACE_SCORE_THRESHOLD)).float()
    is_best = torch.arange(scores.shape[0], device=scores.device) == best
    wgt = wgt + EPS * is_best.float()   # the best alone if none pass
    wgt = wgt / wgt.sum()
    box_lo, box_hi = (wgt[:, None] * lo).sum(0), (wgt[:, None] * hi).sum(0)
    kp = (wgt[:, None, None] * kps).sum(0)
    origin = centre - 0.5 * side                                       # crop-normalised -> photo px
    kp_px = origin + kp * side
    eye_vec = kp_px[1] - kp_px[0]
    return {
        "score": top_score, "valid": top_score >= FACE_SCORE_THRESHOLD,
        "centre": origin + 0.5 * (box_lo + box_hi) * side, "size": (box_hi - box_lo) * side,
        "angle": torch.atan2(eye_vec[1], eye_vec[0]), "keypoints": kp_px,
    }


def face_from_pose(landmarks: torch.Tensor) -> dict[str, torch.Tensor]:
    """A face ellipse guessed from the pose's face landmarks, for when the detector finds none.

    valid only when the nose and both eyes are clearly visible (a back view gets no face).
    Returns centre (2,), size (2,), angle (), valid () like `detect_face`.
    """
    pts = landmarks[:11, :2]
    eyes = 0.5 * (landmarks[LEFT_EYE, :2] + landmarks[RIGHT_EYE, :2])
    mouth = 0.5 * (landmarks[MOUTH_LEFT, :2] + landmarks[MOUTH_RIGHT, :2])
    ears = torch.linalg.vector_norm(landmarks[LEFT_EAR, :2] - landmarks[RIGHT_EAR, :2])
    width = torch.maximum(1.1 * ears, 2.0 * torch.linalg.vector_norm(eyes - mouth)).clamp_min(4.0)
    eye_vec = landmarks[LEFT_EYE, :2] - landmarks[RIGHT_EYE, :2]
    # the subject's left eye is on the image right for a frontal face; a flipped vector means a
    # back or profile view, where only the magnitude of the roll matters
    angle = torch.atan2(eye_vec[1], eye_vec[0])
    angle = torch.where(angle.abs() > math.pi / 2, angle - torch.sign(angle) * math.pi, angle)
    vis = landmarks[[NOSE, LEFT_EYE, RIGHT_EYE], 3].amin()
    return {"centre": 0.5 * (pts.mean(dim=0) + 0.5 * (eyes + mouth)), "size": torch.stack([width, 1.25 * width]),
            "angle": angle, "valid": vis >= FALLBACK_VISIBILITY}
