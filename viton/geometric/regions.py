"""Which pixels the garment may change, and in which layer each body part sits (CIHP-20 labels).

    upper clothing   5 upper-clothes, 6 dress, 7 coat: removed (the cloth-agnostic person)
    neck skin        10: may be covered by the garment; its skin stays where the garment is not
    arms             3 gloves, 14 left arm, 15 right arm: in front of the garment's body,
                     behind its sleeves
    kept             1 hat, 2 hair, 4 sunglasses, 13 face, 8/9/12/16..19 lower body:
                     never changed (hair lies over the collar, the garment tucks under the waist)
    background       0: may change only within an anti-aliasing margin (a few pixels) around
                     the upper body
"""

from __future__ import annotations

import cv2
import numpy as np

UPPER_LABELS = (5, 6, 7)
NECK_LABELS = (10, 11)  # torso skin / neck, scarf
ARM_LABELS = (3, 14, 15)
KEPT_LABELS = (1, 2, 4, 13, 8, 9, 12, 16, 17, 18, 19)
EDGE_SIGMA = 0.0025        # x image long side: Gaussian sigma of the anti-aliased label edges (parse
                           # maps come from low-resolution segmentations: their stairs need rounding)
MIN_EDGE_SIGMA_PX = 0.7


def _lut(labels: tuple[int, ...]) -> np.ndarray:
    lut = np.zeros(256, dtype=np.uint8)
    lut[list(labels)] = 1
    return lut


_UPPER, _NECK, _ARMS, _KEPT, _BODY = (_lut(x) for x in (UPPER_LABELS, NECK_LABELS, ARM_LABELS, KEPT_LABELS,
                                                       UPPER_LABELS + NECK_LABELS + ARM_LABELS))


def label_masks(parse: np.ndarray) -> dict[str, np.ndarray]:
    """(H, W) uint8 CIHP labels -> {"upper", "neck", "arms", "kept", "background"}: (H, W) uint8 {0, 1}."""
    return {"upper": _UPPER[parse], "neck": _NECK[parse], "arms": _ARMS[parse], "kept": _KEPT[parse],
            "background": (parse == 0).astype(np.uint8)}


def edge_sigma(shape: tuple[int, ...]) -> float:
    """Gaussian sigma (px) of the soft label edges for an image of this (H, W, ...) shape."""
    return max(MIN_EDGE_SIGMA_PX, EDGE_SIGMA * max(shape[0], shape[1]))


def upper_mask(parse: np.ndarray) -> np.ndarray:
    """(H, W) uint8 CIHP labels -> (H, W) uint8 {0, 1}: upper clothing (5, 6, 7)."""
    return _UPPER[parse]


def margin_px(shape: tuple[int, ...]) -> int:
    """How far (px) the garment's anti-aliased edge may reach into the background."""
    return int(np.ceil(2.0 * edge_sigma(shape))) + 1


def changeable_region(parse: np.ndarray) -> np.ndarray:
    """(H, W) uint8 {0, 1}: the pixels a try-on may change.

    Upper clothing, neck skin and arms, plus background within `margin_px(parse.shape)` of them.
    Everything else (face, hair, lower body, far background) must come out unchanged.
    """
    body = _BODY[parse]
    r = margin_px(parse.shape)
    box = bounding_box(body, pad=r + 1)
    if box is None:
        return body
    x0, y0, x1, y1 = box
    sub = body[y0:y1, x0:x1]
    grown = cv2.dilate(sub, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    body[y0:y1, x0:x1] = sub | (grown & (parse[y0:y1, x0:x1] == 0))
    return body


def bounding_box(mask: np.ndarray, pad: int) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the non-zero pixels grown by `pad`, clipped; None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (max(int(cols[0]) - pad, 0), max(int(rows[0]) - pad, 0),
            min(int(cols[-1]) + 1 + pad, w), min(int(rows[-1]) + 1 + pad, h))


_SLIVER_KERNEL = np.ones((5, 5), np.uint8)


def soft_label_masks(parse: np.ndarray, sigma: float) -> dict[str, np.ndarray]:
    """(h, w) uint8 CIHP labels -> {"kept", "arms", "upper", "background"}: (h, w) float32 [0, 1]
    with Gaussian edges; the four are blurred together as one 4-channel uint8 image (fast)."""
    stack = np.empty((*parse.shape, 4), dtype=np.uint8)
    for i, lut in enumerate((_KEPT, _ARMS, _UPPER)):
        stack[..., i] = lut[parse] * np.uint8(255)
    stack[..., 3] = (parse == 0) * np.uint8(255)
    # parse maps leave 1-2 px slivers of arm along the silhouette; an arm "in front" there
    # would cut teeth into the garment's edge
    stack[..., 1] = cv2.morphologyEx(stack[..., 1], cv2.MORPH_OPEN, _SLIVER_KERNEL)
    blurred = cv2.GaussianBlur(stack, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REPLICATE)
    soft = blurred.astype(np.float32) * np.float32(1.0 / 255.0)
    return {"kept": soft[..., 0], "arms": soft[..., 1], "upper": soft[..., 2], "background": soft[..., 3]}


def soften(mask: np.ndarray, sigma: float) -> np.ndarray:
    """(h, w) {0, 1} uint8 -> float32 [0, 1] with a Gaussian edge ramp (anti-aliasing)."""
    return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigmaX=sigma, sigmaY=sigma,
                            borderType=cv2.BORDER_REPLICATE)
