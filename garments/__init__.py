"""garments: garment data shared by node 1 (catalog, preparation) and VITON (engines).

Pure image code (numpy, OpenCV, Pillow); no I/O frameworks. Public face:
    Garment, LANDMARK_NAMES      the garment contract (see garments/types.py)
(Preparation, the demo catalog and the catalog loader are filled in by the parsing/garment issue.)
"""

from __future__ import annotations

from garments.types import LANDMARK_NAMES, Garment

__all__ = ["LANDMARK_NAMES", "Garment"]
