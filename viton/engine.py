"""The engine interface: what every try-on engine (`geometric`, `vitonhd`) takes and gives.

Engines do no I/O (no zmq, no files): the service (viton/service.py) does that. Inputs and
outputs are numpy at the boundary so they cross frames unchanged; engines use torch inside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from viton.contract import category_of


@dataclass
class PersonData:
    """The preprocessed shopper.

    Attributes:
        image: (H, W, 3) uint8 RGB photo.
        parse: (H, W) uint8 CIHP-20 labels (0 bg, 2 hair, 5 upper-clothes, 9 pants, 10 neck/torso
            skin, 13 face, 14/15 left/right arm (subject's own), 16/17 legs, ...).
        keypoints: (25, 3) float32 OpenPose BODY_25 (x, y, confidence) in pixels; missing = 0, 0, 0.
        person_mask: (H, W) uint8 person segmentation 0..255, or None (sent only to an engine that
            reads it: viton.contract.ENGINE_READS).

    The tensors' wire form is viton.contract.PERSON_TENSORS; the OpenPose skeleton picture VITON-HD
    reads is drawn from `keypoints` by that engine (viton.skeleton), not carried here.
    """

    image: np.ndarray
    parse: np.ndarray
    keypoints: np.ndarray
    person_mask: np.ndarray | None = None


@dataclass
class GarmentData:
    """A garment as engines take it (see garments.Garment for the catalog object).

    Attributes:
        image: (h, w, 3) uint8 RGB on a plain background.
        mask: (h, w) uint8, 255 = cloth.
        landmarks: (N, 2) float32 (x, y) pixels, rows in garments.landmark_names(category) order
            (viton.contract.LANDMARK_ROWS: 9 for a top, 7 for a bottom, 11 for a dress).
        kind: shape family ("tshirt", "longsleeve", "tank", "shirt", "hoodie"; "trousers", "shorts",
            "skirt"; "dress"); its category is viton.contract.category_of(kind).
        key: the garment's content id (sha256 of image and mask, verified by whoever cached it: node 2's
            gateway), or "" when unknown. An engine may keep work done for a garment under its key
            (viton.geometric.memo); "" means nothing is kept.
    """

    image: np.ndarray
    mask: np.ndarray
    landmarks: np.ndarray
    kind: str = "tshirt"
    key: str = ""

    @property
    def category(self) -> str:
        """"top", "bottom" or "dress" (viton.contract.KIND_CATEGORY)."""
        return category_of(self.kind)


@dataclass
class TryOnOutput:
    """Result of one try-on.

    Attributes:
        image: (H, W, 3) uint8 RGB, the shopper wearing the garment.
        warped_garment: (H, W, 3) uint8 RGB, the garment warped onto the body (debugging).
        garment_alpha: (H, W) float32 in [0, 1], where the garment was composited.
        timings_ms: stage name -> milliseconds.
    """

    image: np.ndarray
    warped_garment: np.ndarray
    garment_alpha: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)


class Engine(Protocol):
    """A try-on engine. Load weights in the constructor; `try_on` must be re-entrant-safe
    for sequential calls and deterministic for the same input. `reads` names the person tensors it
    reads (viton.contract.ENGINE_READS[name]): node 1 sends those and nothing else."""

    name: str
    device: str
    reads: tuple[str, ...]

    def try_on(self, person: PersonData, garment: GarmentData) -> TryOnOutput: ...
