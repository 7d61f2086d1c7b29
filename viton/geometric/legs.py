"""Lower-body anchors from BODY_25 keypoints: where a bottom's or a dress's landmarks go on the person.

Convention: (x, y) pixels of the person image, origin top-left; sides are the subject's own (the right
hip usually appears on the image's LEFT), as in garments.types.BOTTOM_LANDMARK_NAMES. Lengths are in
units of the hip-joint distance `hip_w` (BODY_25's RHip-LHip; joints, not the body's outline).

Needs both hips and at least one knee inside the photo (else LegsNotInView: a photo cut at the waist);
a missing knee is the other one mirrored about the body's axis, a missing ankle is extrapolated along
the thigh (SHIN_LENGTH x the thigh).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from viton.errors import LegsNotInView

MIN_CONFIDENCE = 0.1
R_HIP, R_KNEE, R_ANKLE, L_HIP, L_KNEE, L_ANKLE = 9, 10, 11, 12, 13, 14

WAIST_RISE = 0.5          # x hip_w: a waistband sits this far above the hip joints
WAIST_HALF_WIDTH = 1.0    # x hip_w: half the body's width at the waistband
CROTCH_DROP = 0.45        # x hip_w: the crotch lies this far below the hip joints
SHIN_LENGTH = 1.0         # x the thigh: a missing ankle's distance below the knee
MIN_HIP_WIDTH = 0.35      # x the thigh: a side view's hip width is taken as at least this
MAX_PATH_EXTENSION = 3.0  # x the leg: how far past the ankle a leg path runs (a hem never lies beyond)


@dataclass(frozen=True)
class LegFrame:
    """Anchors of the lower body, all (2,) float64 (x, y) pixels unless noted.

    Attributes:
        hip_w: the hip-joint distance in pixels (at least MIN_HIP_WIDTH x the thigh).
        across: (2,) unit vector from the subject's right hip to the left one.
        down: (2,) unit vector down the body (across turned +90 degrees, towards the knees).
        hip_r, hip_l, knee_r, knee_l, ankle_r, ankle_l: the joints (knees mirrored, ankles extrapolated
            when missing).
        waist_r, waist_l: the body's outline at waistband height; crotch: where the legs part.
        knees_seen: how many knees the pose found (1 or 2).
    """

    hip_w: float
    across: np.ndarray
    down: np.ndarray
    hip_r: np.ndarray
    hip_l: np.ndarray
    knee_r: np.ndarray
    knee_l: np.ndarray
    ankle_r: np.ndarray
    ankle_l: np.ndarray
    waist_r: np.ndarray
    waist_l: np.ndarray
    crotch: np.ndarray
    knees_seen: int

    @property
    def hip_mid(self) -> np.ndarray:
        return (self.hip_r + self.hip_l) / 2

    def leg_length(self, side: str) -> float:
        """Hip -> knee -> ankle of one leg ("r" or "l"), in pixels."""
        hip, knee, ankle = ((self.hip_r, self.knee_r, self.ankle_r) if side == "r"
                            else (self.hip_l, self.knee_l, self.ankle_l))
        return float(np.hypot(*(knee - hip)) + np.hypot(*(ankle - knee)))

    def leg_path(self, side: str) -> np.ndarray:
        """(4, 2) float64: the leg's top at crotch height below its hip, the knee, the ankle, and a point
        MAX_PATH_EXTENSION legs beyond the ankle along the shin (where a long hem may land)."""
        hip, knee, ankle = ((self.hip_r, self.knee_r, self.ankle_r) if side == "r"
                            else (self.hip_l, self.knee_l, self.ankle_l))
        top = hip + self.down * CROTCH_DROP * self.hip_w
        shin = _unit(ankle - knee)
        return np.stack([top, knee, ankle, ankle + shin * MAX_PATH_EXTENSION * self.leg_length(side)])


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.hypot(v[0], v[1]))
    return v / n if n > 1e-6 else np.array([0.0, 1.0])


def _point(kp: np.ndarray, i: int, shape: tuple[int, int]) -> np.ndarray | None:
    """Keypoint i as (2,) float64, or None when missing or outside the (H, W) photo."""
    x, y, c = (float(v) for v in kp[i])
    h, w = shape
    if c <= MIN_CONFIDENCE or (x == 0.0 and y == 0.0) or not (0.0 <= x < w and 0.0 <= y < h):
        return None
    return np.array([x, y], dtype=np.float64)


def point_along(path: np.ndarray, distance: float) -> tuple[np.ndarray, np.ndarray]:
    """The point `distance` px along the polyline `path` (N, 2) from its start, and the unit direction
    of the segment it lies on (clamped to the path's ends)."""
    seg = np.diff(path, axis=0)
    lengths = np.hypot(seg[:, 0], seg[:, 1])
    d = max(float(distance), 0.0)
    for i, length in enumerate(lengths):
        if d <= length or i == len(lengths) - 1:
            direction = _unit(seg[i])
            return path[i] + direction * min(d, float(length)), direction
        d -= float(length)
    return path[-1].copy(), _unit(seg[-1])


def leg_frame(keypoints: np.ndarray, shape: tuple[int, int]) -> LegFrame:
    """Lower-body anchors from (25, 3) float32 BODY_25 keypoints of a photo of `shape` (H, W).

    Raises:
        LegsNotInView: a hip, or both knees, are missing or outside the photo.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    hr, hl = _point(kp, R_HIP, shape), _point(kp, L_HIP, shape)
    kr, kl = _point(kp, R_KNEE, shape), _point(kp, L_KNEE, shape)
    if hr is None or hl is None or (kr is None and kl is None):
        found = [n for n, p in (("RHip", hr), ("LHip", hl), ("RKnee", kr), ("LKnee", kl)) if p is not None]
        raise LegsNotInView(f"the legs are not in view: a bottom or a dress needs both hips and a knee in the "
                            f"photo, found {', '.join(found) or 'none of them'}; step back so the camera sees "
                            "you down to the knees (or choose a top)")
    hip_mid = (hr + hl) / 2
    across = _unit(hl - hr)
    down = np.array([-across[1], across[0]])
    knees = [k for k in (kr, kl) if k is not None]
    towards_knees = np.mean(knees, axis=0) - hip_mid
    if float(np.dot(down, towards_knees)) < 0:   # hips labelled the other way round (a back view)
        down = -down
    if kr is None and kl is not None:   # mirror the knee that was seen about the body's axis
        v = kl - hl
        kr = hr + v - 2.0 * float(np.dot(v, across)) * across
    elif kl is None and kr is not None:
        v = kr - hr
        kl = hl + v - 2.0 * float(np.dot(v, across)) * across
    if kr is None or kl is None:
        raise LegsNotInView("the legs are not in view: no knee in the photo")
    thigh = max(float(np.hypot(*(kr - hr))), float(np.hypot(*(kl - hl))), 1.0)
    hip_w = max(float(np.hypot(*(hl - hr))), MIN_HIP_WIDTH * thigh)
    ar = _point(kp, R_ANKLE, shape)
    al = _point(kp, L_ANKLE, shape)
    ar = kr + _unit(kr - hr) * SHIN_LENGTH * float(np.hypot(*(kr - hr))) if ar is None else ar
    al = kl + _unit(kl - hl) * SHIN_LENGTH * float(np.hypot(*(kl - hl))) if al is None else al
    waist = hip_mid - down * WAIST_RISE * hip_w
    return LegFrame(hip_w=hip_w, across=across, down=down, hip_r=hr, hip_l=hl, knee_r=kr, knee_l=kl,
                    ankle_r=ar, ankle_l=al, waist_r=waist - across * WAIST_HALF_WIDTH * hip_w,
                    waist_l=waist + across * WAIST_HALF_WIDTH * hip_w,
                    crotch=hip_mid + down * CROTCH_DROP * hip_w, knees_seen=len(knees))
