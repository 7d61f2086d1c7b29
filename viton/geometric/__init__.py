"""The `geometric` try-on engine: landmark thin-plate-spline warp, no learned weights.

Public face:
    GeometricEngine(device)           implements viton.engine.Engine
    body_frame(keypoints) -> BodyFrame the body anchors garments are warped to
    changeable_region(parse)          the pixels a try-on may change (everything else is kept)
Inside it, viton.geometric.protect's regions (face box, head disk, hair, hands, everything below
the garment's hem) are never written either; viton.geometric.shading gives the old clothes' light.
"""

from __future__ import annotations

from viton.geometric.body import BodyFrame, body_frame
from viton.geometric.engine import GeometricEngine
from viton.geometric.regions import changeable_region

__all__ = ["BodyFrame", "GeometricEngine", "body_frame", "changeable_region"]
