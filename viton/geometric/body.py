"""Body anchors from BODY_25 keypoints: where each garment landmark goes on the person.

Convention: (x, y) pixels of the person image, origin top-left. Sides are the subject's own
(RShoulder usually appears on the image's LEFT for a person facing the camera), as in
garments.LANDMARK_NAMES. Missing keypoints (confidence <= MIN_CONFIDENCE, or at 0, 0) are
extrapolated from body proportions, so a photo cut at the waist still gets hips.
"""

from __future__ import annotations

from dataclasses import dataclass

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
MAX_LEAN_DEG = 40.0       # largest angle between the torso axis (shoulders -> hips) and the
                          # perpendicular of the shoulder line that is believed


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


def _hip_centre(kp: np.ndarray, mid: np.ndarray, across: np.ndarray, down: np.ndarray,
                scale: float) -> tuple[np.ndarray, bool]:
    """The mid-hip point (2,) and whether any hip keypoint was seen (else it is extrapolated)."""
    hr, hl, hm = _point(kp, R_HIP), _point(kp, L_HIP), _point(kp, MID_HIP)
    if hr is not None and hl is not None:
        return (hr + hl) / 2, True
    if hm is not None:
        return hm, True
    if hr is not None:
        return hr + across * HIP_HALF_WIDTH * scale, True
    if hl is not None:
        return hl - across * HIP_HALF_WIDTH * scale, True
    return mid + down * TORSO_LENGTH * scale, False


def _limit_lean(axis: np.ndarray, down: np.ndarray) -> np.ndarray:
    """The torso axis turned back to within MAX_LEAN_DEG of `down` (a mis-detected hip must not
    swing the garment sideways), keeping its length."""
    length = float(np.hypot(*axis))
    angle = float(np.arctan2(down[0] * axis[1] - down[1] * axis[0], float(np.dot(down, axis))))
    limit = np.deg2rad(MAX_LEAN_DEG)
    if abs(angle) <= limit:
        return axis
    a = float(np.sign(angle)) * limit
    c, s = np.cos(a), np.sin(a)
    return np.array([c * down[0] - s * down[1], s * down[0] + c * down[1]]) * length


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

    hip_mid, hips_seen = _hip_centre(kp, mid, across, down, scale)
    axis = hip_mid - mid
    if not hips_seen or float(np.dot(axis, down)) < 0.5 * scale:  # no hips, or a bent pose
        axis = down * TORSO_LENGTH * scale
    axis = _limit_lean(axis, down)
    # the hem follows the torso's own axis (shoulders -> hips): a leaning body gets a garment that
    # ends at its hips, square to its torso, not one hanging straight down beside them
    hem_mid = mid + axis * (1.0 + HEM_BELOW_HIP)
    axis_dir = _unit(axis)
    hem_across = np.array([axis_dir[1], -axis_dir[0]])

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
        hem_r=hem_mid - hem_across * HEM_HALF_WIDTH * scale,
        hem_l=hem_mid + hem_across * HEM_HALF_WIDTH * scale,
        elbow_r=er, elbow_l=el, wrist_r=wr, wrist_l=wl,
    )
