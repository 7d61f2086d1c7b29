"""The demo catalog: garment product photos generated at install time (deterministic, seeded).

    python -m garments.demo --out DIR      writes DIR/<slug>.png, DIR/<slug>_mask.png, DIR/manifest.json;
                                           does nothing when DIR already holds a valid catalog.

Public face:
    DEMO_DESIGNS                  the designs (slug, name, kind, colours, proportions)
    render_garment(design)        -> Rendered(image, mask, landmarks): one photo + its exact silhouette
    write_demo_catalog(out_dir)   -> list of manifest entries (idempotent)
    demo_catalog_valid(out_dir)   -> bool
"""

from __future__ import annotations

from garments.demo.catalog import DEMO_DESIGNS, MANIFEST_NAME, demo_catalog_valid, write_demo_catalog
from garments.demo.render import Design, Rendered, render_garment
from garments.demo.shapes import CANVAS_H, CANVAS_W, Proportions

__all__ = [
    "CANVAS_H", "CANVAS_W", "DEMO_DESIGNS", "MANIFEST_NAME", "Design", "Proportions", "Rendered",
    "demo_catalog_valid", "render_garment", "write_demo_catalog",
]
