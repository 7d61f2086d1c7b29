"""parse_person: the CIHP-20 label map of a photo, given its pose (node1.pose) — host-side boundary."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from node1.parsing.errors import InvalidParsingInput
from node1.parsing.model import WORK_LONG_SIDE
from node1.parsing.runner import parsing_runner


@dataclass
class ParseResult:
    """parse: (H, W) uint8 CIHP labels (0 outside the person). parts: (h, w) uint8 body-part map of the
    working grid (see ParsingModule). face: dict valid / centre (x, y) / size (w, h) px / roll rad.
    served_by: the device that ran it. timings_ms: {"parse": ...}."""

    parse: np.ndarray
    parts: np.ndarray
    face: dict[str, Any]
    served_by: str
    timings_ms: dict[str, float] = field(default_factory=dict)


def _check(image: np.ndarray, landmarks: np.ndarray, mask: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InvalidParsingInput(f"image must be (H, W, 3) uint8 RGB, got {getattr(image, 'dtype', type(image))} "
                                  f"{getattr(image, 'shape', '')}")
    h, w = image.shape[:2]
    if not isinstance(landmarks, np.ndarray) or landmarks.shape != (33, 4):
        raise InvalidParsingInput(f"landmarks must be (33, 4) [x px, y px, z, visibility] BlazePose landmarks, "
                                  f"got {getattr(landmarks, 'shape', type(landmarks))}")
    if not np.isfinite(landmarks).all():
        raise InvalidParsingInput("landmarks hold NaN or infinite values")
    if not isinstance(mask, np.ndarray) or mask.shape != (h, w) or mask.dtype not in (np.uint8, np.float32):
        raise InvalidParsingInput(f"mask must be (H, W) = ({h}, {w}) uint8 (255 = person) or float32 in [0, 1], got "
                                  f"{getattr(mask, 'dtype', type(mask))} {getattr(mask, 'shape', '')}")


def parse_person(image: np.ndarray, landmarks: np.ndarray, mask: np.ndarray, device: Any = "cpu", *,
                 work_long_side: int = WORK_LONG_SIDE) -> ParseResult:
    """CIHP-20 human parsing of one photo.

    Args:
        image: (H, W, 3) uint8 RGB.
        landmarks: (33, 4) float32 BlazePose landmarks [x px, y px, z, visibility] (PoseResult.landmarks).
        mask: (H, W) person mask, uint8 255 = person (PoseResult.mask) or float32 in [0, 1].
        device: a local torch device or a gvirtus RemoteDevice (run it where the pose ran).
        work_long_side: the working grid's long side, px (node1.parsing.ParsingModule).
    Raises:
        InvalidParsingInput: an argument of the wrong shape / dtype (the message names it).
        Errors of the device (gvirtus.RemoteDeviceLost, ...) pass through.
    """
    _check(image, landmarks, mask)
    run = parsing_runner(device, work_long_side)
    t0 = time.perf_counter()
    x = torch.from_numpy(np.ascontiguousarray(image))[None]  # (1, H, W, 3): the photo's own layout, no copy
    m = torch.from_numpy(np.ascontiguousarray(mask))[None, None]
    lm = torch.from_numpy(np.ascontiguousarray(landmarks, dtype=np.float32))[None]
    parse, parts, face = run(x, m, lm)
    f = face[0].numpy().astype(float)
    return ParseResult(
        parse=parse[0].numpy(), parts=parts[0].numpy(),
        face={"valid": bool(f[0] > 0.5), "centre": (f[1], f[2]), "size": (f[3], f[4]), "roll": f[5]},
        served_by=run.name, timings_ms={"parse": (time.perf_counter() - t0) * 1000.0},
    )
