"""The cloth-agnostic person representation of VITON-HD, built from BODY_25 keypoints.

Both functions work at the full model resolution on numpy arrays and draw with PIL (line widths,
circle radii and the gray fill follow the official dataset code's geometry).

Convention: keypoints are BODY_25 rows (x, y) in pixels of the given image, origin top-left;
a keypoint at exactly (0, 0) is missing. Sides are the subject's (2 = right shoulder, shown on
the image's left for a person facing the camera).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from viton.vitonhd.errors import KeypointsMissing
from viton.vitonhd.labels import CIHP_HEAD, CIHP_LEFT_ARM, CIHP_LOWER_BODY, CIHP_RIGHT_ARM, CIHP_TORSO_SKIN, CIHP_UPPER

NECK, R_SHOULDER, R_ELBOW, R_WRIST, L_SHOULDER, L_ELBOW, L_WRIST, R_HIP, L_HIP = 1, 2, 3, 4, 5, 6, 7, 9, 12
NUM_BODY25 = 25

PARSE_UNIT_PX = 10          # "r" of the agnostic parse: arm line 10r wide, circles 15r (4r at the wrist)
IMAGE_UNIT_PX = 20          # "r" of the agnostic image: arm lines 10r, circles 5r, torso 6r/12r, neck 7r
AGNOSTIC_GRAY = (128, 128, 128)  # PIL 'gray'
# Missing hips are placed this many shoulder widths below the shoulders (adult torso ~1.3x shoulder width).
HIP_DROP_PER_SHOULDER_WIDTH = 1.3


def _missing(p: np.ndarray) -> bool:
    return bool(p[0] == 0.0 and p[1] == 0.0)


def _pt(p: np.ndarray) -> tuple[float, float]:
    return float(p[0]), float(p[1])


def _box(p: np.ndarray, rx: float, ry: float) -> tuple[float, float, float, float]:
    return float(p[0]) - rx, float(p[1]) - ry, float(p[0]) + rx, float(p[1]) + ry


def complete_keypoints(points: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Fill in the keypoints the agnostic construction cannot do without.

    The official code assumes shoulders, neck and hips exist (a missing hip pair divides by zero).
    Shoulders are required; a missing neck becomes the mid-shoulder point (as in our BODY_25
    conversion); a missing hip is dropped HIP_DROP_PER_SHOULDER_WIDTH shoulder widths below its
    shoulder, perpendicular to the shoulder line (webcam framings often cut the hips off).

    Args:
        points: (25, 2) float64 (x, y) pixels, (0, 0) = missing.
    Returns:
        (completed copy, notes naming every filled keypoint).
    Raises:
        KeypointsMissing: a shoulder is missing or both coincide.
    """
    pts = np.array(points, dtype=np.float64, copy=True)
    for idx, name in ((R_SHOULDER, "right shoulder"), (L_SHOULDER, "left shoulder")):
        if _missing(pts[idx]):
            raise KeypointsMissing(f"VITON-HD needs both shoulders; BODY_25 keypoint {idx} ({name}) is missing (0, 0)")
    across = pts[L_SHOULDER] - pts[R_SHOULDER]
    width = float(np.hypot(*across))
    if width == 0.0:
        raise KeypointsMissing(f"shoulders 2 and 5 coincide at {_pt(pts[R_SHOULDER])}: cannot size the torso")
    notes: list[str] = []
    if _missing(pts[NECK]):
        pts[NECK] = (pts[R_SHOULDER] + pts[L_SHOULDER]) / 2
        notes.append("neck (1) set to mid-shoulders")
    down = np.array([-across[1], across[0]]) / width
    if down[1] < 0:
        down = -down
    for hip, shoulder in ((R_HIP, R_SHOULDER), (L_HIP, L_SHOULDER)):
        if _missing(pts[hip]):
            pts[hip] = pts[shoulder] + down * (HIP_DROP_PER_SHOULDER_WIDTH * width)
            notes.append(f"hip ({hip}) extrapolated below shoulder ({shoulder})")
    return pts, notes


def parse_agnostic(parse: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Remove the garment region from a CIHP parse.

    Arm pixels near the shoulder/elbow/wrist chain are cleared (label 14 along 2-5-6-7, label 15
    along 5-2-3-4: lines 10r wide, circles of radius 15r, 4r at the chain's end, r = 10 px; a
    segment with a missing end is skipped), then upper clothes / dress / coat and torso skin.

    Args:
        parse: (H, W) uint8 CIHP labels.
        points: (25, 2) float64 keypoints in the parse's pixels (as given, before any hip rescale).
    Returns:
        (H, W) uint8 CIHP labels; cleared pixels are 0 (background).
    """
    h, w = parse.shape
    r = PARSE_UNIT_PX
    out = parse.copy()
    for label, chain in ((CIHP_LEFT_ARM, (R_SHOULDER, L_SHOULDER, L_ELBOW, L_WRIST)),
                         (CIHP_RIGHT_ARM, (L_SHOULDER, R_SHOULDER, R_ELBOW, R_WRIST))):
        canvas = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(canvas)
        prev = chain[0]
        for idx in chain[1:]:
            if _missing(points[prev]) or _missing(points[idx]):
                continue
            draw.line([_pt(points[prev]), _pt(points[idx])], fill=255, width=r * 10)
            radius = r * 4 if idx == chain[-1] else r * 15
            draw.ellipse(_box(points[idx], radius, radius), fill=255, outline=255)
            prev = idx
        out[(np.asarray(canvas) > 0) & (parse == label)] = 0
    out[np.isin(parse, CIHP_UPPER)] = 0
    out[parse == CIHP_TORSO_SKIN] = 0
    return out


def image_agnostic(image: np.ndarray, parse: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Gray out the torso, arms and neck of the person photo, keeping head and lower body.

    Hips are first moved about their midpoint so the hip width equals the shoulder width (skipped
    if the hips coincide). Then, with r = 20 px: a 10r line and 5r circles across the shoulders,
    10r lines with 5r circles down each arm (segments with a missing end skipped), 3r x 6r
    ellipses at the hips, 6r lines shoulder-hip, a 12r hip line, the shoulder-hip polygon and a
    square of half side 7r on the neck. Pixels whose original label is head (4, 13) or lower body
    (9, 12, 16-19) are restored.

    Args:
        image: (H, W, 3) uint8 RGB.
        parse: (H, W) uint8 CIHP labels (the full parse, not the agnostic one).
        points: (25, 2) float64 keypoints in the image's pixels; not modified.
    Returns:
        (H, W, 3) uint8 RGB.
    """
    pts = np.array(points, dtype=np.float64, copy=True)
    r = IMAGE_UNIT_PX
    shoulder_w = float(np.linalg.norm(pts[L_SHOULDER] - pts[R_SHOULDER]))
    hip_w = float(np.linalg.norm(pts[L_HIP] - pts[R_HIP]))
    if hip_w > 0:
        mid = (pts[R_HIP] + pts[L_HIP]) / 2
        pts[R_HIP] = mid + (pts[R_HIP] - mid) / hip_w * shoulder_w
        pts[L_HIP] = mid + (pts[L_HIP] - mid) / hip_w * shoulder_w

    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    gray = AGNOSTIC_GRAY
    draw.line([_pt(pts[R_SHOULDER]), _pt(pts[L_SHOULDER])], fill=gray, width=r * 10)
    for idx in (R_SHOULDER, L_SHOULDER):
        draw.ellipse(_box(pts[idx], r * 5, r * 5), fill=gray, outline=gray)
    for idx in (R_ELBOW, R_WRIST, L_ELBOW, L_WRIST):
        if _missing(pts[idx - 1]) or _missing(pts[idx]):
            continue
        draw.line([_pt(pts[idx - 1]), _pt(pts[idx])], fill=gray, width=r * 10)
        draw.ellipse(_box(pts[idx], r * 5, r * 5), fill=gray, outline=gray)
    for idx in (R_HIP, L_HIP):
        draw.ellipse(_box(pts[idx], r * 3, r * 6), fill=gray, outline=gray)
    draw.line([_pt(pts[R_SHOULDER]), _pt(pts[R_HIP])], fill=gray, width=r * 6)
    draw.line([_pt(pts[L_SHOULDER]), _pt(pts[L_HIP])], fill=gray, width=r * 6)
    draw.line([_pt(pts[R_HIP]), _pt(pts[L_HIP])], fill=gray, width=r * 12)
    draw.polygon([_pt(pts[i]) for i in (R_SHOULDER, L_SHOULDER, L_HIP, R_HIP)], fill=gray, outline=gray)
    draw.rectangle(_box(pts[NECK], r * 7, r * 7), fill=gray, outline=gray)

    keep = np.isin(parse, CIHP_HEAD + CIHP_LOWER_BODY)
    return np.where(keep[..., None], image, np.asarray(canvas))
