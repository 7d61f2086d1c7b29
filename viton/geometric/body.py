"""Body anchors from BODY_25 keypoints: where each garment landmark goes on the person.

Convention: (x, y) pixels of the person image, origin top-left. Sides are the subject's own
(RShoulder usually appears on the image's LEFT for a person facing the camera), as in
garments.LANDMARK_NAMES. Missing keypoints (confidence <= MIN_CONFIDENCE, or at 0, 0) are
extrapolated from body proportions, so a photo cut at the waist still gets hips.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from viton.errors import PoseIncomplete

MIN_CONFIDENCE = 0.1
# BODY_25 indices
NOSE, NECK, R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST, MID_HIP, R_HIP, L_HIP = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12)

# Body proportions in units of the shoulder-keypoint distance (adult, front view).
TORSO_LENGTH = 1.45       # neck -> mid-hip
HIP_HALF_WIDTH = 0.30     # mid-hip -> hip keypoint
UPPER_ARM_LENGTH = 0.80   # shoulder -> elbow
NOSE_NECK = 0.65          # nose -> neck; lets a side view (shoulders overlap) keep a sane scale
SEAM_OUT = 0.07           # shoulder seam tip: this far outward of the shoulder keypoint
SEAM_UP = 0.05            # ... and this far up
ARMPIT_DOWN = 0.42        # armpit: below the shoulder keypoint
ARMPIT_IN = 0.0           # ... and inward
HEM_BELOW_HIP = 0.12      # hem line below the hip keypoints, in torso lengths
HEM_HALF_WIDTH = 0.62     # hem corners from the torso axis


@dataclass(frozen=True)
class BodyFrame:
    """Anchors on the person, all (2,) float64 (x, y) pixels.

    Attributes:
        scale: body scale in pixels (shoulder width, or larger for a side view).
        across: (2,) unit vector from the subject's right shoulder to the left one.
        down: (2,) unit vector down the torso (across rotated +90 degrees in image axes).
        neck, shoulder_r/l (keypoints), seam_r/l (garment seam tips), armpit_r/l, hem_r/l,
        elbow_r/l, wrist_r/l (extrapolated along the arm when missing).
        arm_found_r/l: whether the elbow was detected (else the arm hangs along `down`).
    """

    scale: float
    across: np.ndarray
    down: np.ndarray
    neck: np.ndarray
    shoulder_r: np.ndarray
    shoulder_l: np.ndarray
    seam_r: np.ndarray
    seam_l: np.ndarray
    armpit_r: np.ndarray
    armpit_l: np.ndarray
    hem_r: np.ndarray
    hem_l: np.ndarray
    elbow_r: np.ndarray
    elbow_l: np.ndarray
    wrist_r: np.ndarray
    wrist_l: np.ndarray


def _point(kp: np.ndarray, i: int) -> np.ndarray | None:
    x, y, c = (float(v) for v in kp[i])
    if c <= MIN_CONFIDENCE or (x == 0.0 and y == 0.0):
        return None
    return np.array([x, y], dtype=np.float64)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.hypot(v[0], v[1]))
    return v / n if n > 1e-6 else v * 0.0


def body_frame(keypoints: np.ndarray) -> BodyFrame:
    """Anchor points of the torso and arms from (25, 3) float32 BODY_25 keypoints (x, y, conf).

    Raises:
        PoseIncomplete: when a shoulder is missing (the garment cannot be placed without both).
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    sr, sl = _point(kp, R_SHOULDER), _point(kp, L_SHOULDER)
    if sr is None or sl is None:
        missing = [n for n, p in (("RShoulder (2)", sr), ("LShoulder (5)", sl)) if p is None]
        raise PoseIncomplete(f"keypoints lack {', '.join(missing)} (confidence <= {MIN_CONFIDENCE}); "
                             "the try-on needs both shoulders in the photo")
    width = float(np.hypot(*(sl - sr)))
    across = _unit(sl - sr) if width > 1e-3 else np.array([1.0, 0.0])
    down = np.array([-across[1], across[0]])
    neck = _point(kp, NECK)
    neck = (sr + sl) / 2 if neck is None else neck
    nose = _point(kp, NOSE)
    scale = max(width, float(np.hypot(*(nose - neck))) / NOSE_NECK if nose is not None else 0.0, 1.0)
    mid = (sr + sl) / 2

    hr, hl, hm = _point(kp, R_HIP), _point(kp, L_HIP), _point(kp, MID_HIP)
    if hr is not None and hl is not None:
        hip_mid = (hr + hl) / 2
    elif hm is not None:
        hip_mid = hm
    elif hr is not None:
        hip_mid = hr + across * HIP_HALF_WIDTH * scale
    elif hl is not None:
        hip_mid = hl - across * HIP_HALF_WIDTH * scale
    else:
        hip_mid = mid + down * TORSO_LENGTH * scale
    torso = float(np.dot(hip_mid - mid, down))
    torso = torso if torso > 0.5 * scale else TORSO_LENGTH * scale  # a bent pose: keep a sane length
    hem_mid = mid + down * torso * (1.0 + HEM_BELOW_HIP)

    def arm(shoulder: np.ndarray, elbow_i: int, wrist_i: int, outward: np.ndarray) -> tuple[np.ndarray, ...]:
        elbow = _point(kp, elbow_i)
        if elbow is None:
            elbow = shoulder + _unit(down + 0.25 * outward) * UPPER_ARM_LENGTH * scale
        wrist = _point(kp, wrist_i)
        if wrist is None:
            wrist = elbow + _unit(elbow - shoulder) * UPPER_ARM_LENGTH * scale
        return elbow, wrist

    er, wr = arm(sr, R_ELBOW, R_WRIST, -across)
    el, wl = arm(sl, L_ELBOW, L_WRIST, across)
    return BodyFrame(
        scale=scale, across=across, down=down, neck=neck, shoulder_r=sr, shoulder_l=sl,
        seam_r=sr - across * SEAM_OUT * scale - down * SEAM_UP * scale,
        seam_l=sl + across * SEAM_OUT * scale - down * SEAM_UP * scale,
        armpit_r=sr + down * ARMPIT_DOWN * scale + across * ARMPIT_IN * scale,
        armpit_l=sl + down * ARMPIT_DOWN * scale - across * ARMPIT_IN * scale,
        hem_r=hem_mid - across * HEM_HALF_WIDTH * scale,
        hem_l=hem_mid + across * HEM_HALF_WIDTH * scale,
        elbow_r=er, elbow_l=el, wrist_r=wr, wrist_l=wl,
    )


CLOTH_SAMPLE_STRIDE = 4     # px: subsample of the parse map for the clothes' extent
TORSO_BAND = 0.5            # x scale: |offset across| that counts as torso when finding the hem
HEM_BAND = 0.3              # x scale: rows above the clothes' bottom used to measure the hem width
MAX_HEM_HALF_WIDTH = 0.85   # x scale
HEM_OVERLAP = 0.03          # x scale: the hem goes this far past the old clothes' bottom


def fit_hem_to_clothes(body: BodyFrame, upper: np.ndarray, stride: int = 1) -> BodyFrame:
    """Lower and widen the hem to the old upper clothes when they reach further (coats, bulky
    suits): the new garment then covers what the old one did. Never raises or narrows the hem.

    Args:
        body: anchors from `body_frame`.
        upper: (H, W) uint8 {0, 1}, the person's upper clothing (CIHP 5, 6, 7), or that mask
            already subsampled by `stride` (upper[::stride, ::stride]).
    """
    step = max(CLOTH_SAMPLE_STRIDE // stride, 1)
    s = step * stride
    ys, xs = np.nonzero(upper[::step, ::step])
    if ys.size < 16:
        return body
    mid = (body.shoulder_r + body.shoulder_l) / 2
    px = np.stack([xs * s, ys * s], axis=1).astype(np.float64) - mid
    t = px @ body.down
    u = px @ body.across
    band = np.abs(u) <= TORSO_BAND * body.scale
    if not band.any():
        return body
    bottom = float(np.percentile(t[band], 99)) + HEM_OVERLAP * body.scale
    hem_mid = (body.hem_r + body.hem_l) / 2
    hem_t = float(np.dot(hem_mid - mid, body.down))
    if bottom > hem_t:
        hem_mid = hem_mid + body.down * (bottom - hem_t)
        hem_t = bottom
    rows = (t >= hem_t - HEM_BAND * body.scale) & (t <= hem_t)
    half_r = float(np.dot(hem_mid - body.hem_r, body.across))
    half_l = float(np.dot(body.hem_l - hem_mid, body.across))
    if rows.sum() >= 8:
        cap = MAX_HEM_HALF_WIDTH * body.scale
        half_r = min(max(half_r, -float(np.percentile(u[rows], 2))), cap)
        half_l = min(max(half_l, float(np.percentile(u[rows], 98))), cap)
    return replace(body, hem_r=hem_mid - body.across * half_r, hem_l=hem_mid + body.across * half_l)
