"""Writing the demo catalog to disk (idempotent) and the designs it holds."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from garments.demo.lower import LowerProportions
from garments.demo.render import Design, render_garment
from garments.demo.shapes import Proportions
from garments.types import LANDMARK_NAMES, category_of, content_id, landmark_names

log = logging.getLogger("garments.demo")

MANIFEST_NAME = "manifest.json"
GENERATOR_VERSION = 5          # bump when the designs or the painter change: regenerates on next install
PNG_COMPRESSION = 3            # fast enough for install time, ~1 MB per garment

_SHORT = Proportions(body_hw=200.0, hem_hw=196.0, top_y=150.0, armpit_y=345.0, hem_y=850.0, sleeve_len=180.0,
                     sleeve_angle=32.0, cuff_w=100.0)
_LONG = Proportions(body_hw=190.0, hem_hw=186.0, top_y=145.0, shoulder_out=16.0, shoulder_drop=50.0, sleeve="long",
                    sleeve_len=520.0, sleeve_angle=10.0, cuff_w=76.0, armpit_y=335.0, hem_y=860.0)
_TANK = Proportions(body_hw=186.0, hem_hw=192.0, neck_hw=70.0, top_y=120.0, neck_dip=30.0, front_neck=120.0,
                    sleeve="none", armpit_y=385.0, hem_y=860.0)
_SHIRT = Proportions(body_hw=192.0, hem_hw=192.0, neck_hw=62.0, top_y=135.0, neck_dip=12.0, front_neck=40.0,
                     shoulder_out=18.0, sleeve="long", sleeve_len=530.0, sleeve_angle=11.0, cuff_w=74.0,
                     armpit_y=335.0, hem_y=850.0, hem_curve=34.0)
_HOODIE = Proportions(body_hw=196.0, hem_hw=186.0, neck_hw=66.0, top_y=150.0, shoulder_out=18.0,
                      shoulder_drop=56.0, sleeve="long", sleeve_len=520.0, sleeve_angle=12.0, cuff_w=80.0,
                      armpit_y=350.0, hem_y=880.0, hood=True)

_JEANS = LowerProportions(waist_y=50.0, waist_hw=150.0, hip_y=220.0, hip_hw=172.0, crotch_y=310.0, hem_y=980.0,
                          hem_out=160.0, hem_in=30.0)
_SHORTS = LowerProportions(waist_y=180.0, waist_hw=170.0, hip_y=350.0, hip_hw=192.0, crotch_y=450.0, hem_y=720.0,
                           hem_out=204.0, hem_in=20.0)
_SKIRT = LowerProportions(waist_y=170.0, waist_hw=150.0, hip_y=330.0, hip_hw=184.0, crotch_y=None, hem_y=800.0,
                          hem_out=262.0, hem_in=10.0)
_DRESS = LowerProportions(top_y=50.0, neck_hw=64.0, neck_dip=44.0, strap_w=44.0, armpit_y=250.0, body_hw=128.0,
                          waist_y=430.0, waist_hw=112.0, hip_y=560.0, hip_hw=150.0, crotch_y=None, hem_y=955.0,
                          hem_out=232.0, hem_in=10.0)

DEMO_DESIGNS: tuple[Design, ...] = (
    Design("tshirt-red", "Red crew-neck tee", "tshirt", (178, 34, 42), _SHORT, seed=11),
    Design("longsleeve-navy", "Navy long-sleeve tee", "longsleeve", (34, 48, 86), _LONG, seed=12),
    Design("tank-olive", "Olive rib tank top", "tank", (106, 112, 62), _TANK, weave="rib", seed=13),
    Design("shirt-oxford", "Blue oxford shirt", "shirt", (150, 180, 214), _SHIRT, weave="twill", seed=14),
    Design("hoodie-grey", "Heather grey hoodie", "hoodie", (140, 142, 146), _HOODIE, weave="fleece", seed=15),
    Design("tshirt-breton", "Breton striped tee", "tshirt", (240, 238, 230), _SHORT, pattern="stripes",
           accent=(28, 40, 82), seed=16),
    Design("tshirt-sunset", "Sunset print tee", "tshirt", (58, 128, 140), _SHORT, pattern="print",
           accent=(40, 52, 96), seed=17),
    Design("tshirt-black", "Plain black tee", "tshirt", (30, 30, 33), _SHORT, seed=18),
    Design("tshirt-white", "Plain white tee", "tshirt", (246, 246, 244), _SHORT, seed=19),
    Design("longsleeve-cream", "Cream waffle long-sleeve", "longsleeve", (232, 222, 200), _LONG, weave="rib",
           seed=20),
    Design("jeans-indigo", "Indigo straight jeans", "trousers", (52, 74, 118), weave="twill", seed=21, lower=_JEANS),
    Design("shorts-khaki", "Khaki chino shorts", "shorts", (186, 164, 120), weave="twill", seed=22, lower=_SHORTS),
    Design("skirt-burgundy", "Burgundy A-line skirt", "skirt", (122, 30, 48), seed=23, lower=_SKIRT),
    Design("dress-teal", "Teal sleeveless dress", "dress", (30, 120, 118), seed=24, lower=_DRESS),
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def demo_catalog_valid(out_dir: str | os.PathLike[str]) -> bool:
    """True when out_dir holds a complete catalog of this generator version with intact files."""
    root = Path(out_dir)
    try:
        manifest = json.loads((root / MANIFEST_NAME).read_text())
        if manifest.get("generator_version") != GENERATOR_VERSION:
            return False
        if [e["slug"] for e in manifest["garments"]] != [d.slug for d in DEMO_DESIGNS]:
            return False
        for entry in manifest["garments"]:
            for key in ("image", "mask"):
                if _sha256(root / entry[key]) != entry[key + "_sha256"]:
                    return False
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


def _write_png(path: Path, array: np.ndarray) -> None:
    img = array[..., ::-1] if array.ndim == 3 else array
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:
        raise OSError(f"could not encode {path.name} as PNG")
    path.write_bytes(buf.tobytes())


def write_demo_catalog(out_dir: str | os.PathLike[str], *, force: bool = False) -> list[dict[str, object]]:
    """Render every design into out_dir (atomically: a temp folder renamed into place) and return the entries.

    Idempotent: an existing valid catalog is kept as is (pass force=True to regenerate).
    """
    root = Path(out_dir)
    if not force and demo_catalog_valid(root):
        log.info("demo catalog at %s is present and valid: nothing to do", root)
        return list(json.loads((root / MANIFEST_NAME).read_text())["garments"])
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=root.parent))
    entries: list[dict[str, object]] = []
    for design in DEMO_DESIGNS:
        r = render_garment(design)
        image_name, mask_name = f"{design.slug}.png", f"{design.slug}_mask.png"
        _write_png(tmp / image_name, r.image)
        _write_png(tmp / mask_name, r.mask)
        entries.append({
            "slug": design.slug, "name": design.name, "kind": design.kind, "category": category_of(design.kind),
            "id": content_id(r.image, r.mask),
            "image": image_name, "mask": mask_name,
            "image_sha256": _sha256(tmp / image_name), "mask_sha256": _sha256(tmp / mask_name),
            "landmarks": {n: [round(float(x), 2), round(float(y), 2)]
                          for n, (x, y) in zip(landmark_names(category_of(design.kind)), r.landmarks, strict=True)},
        })
    manifest = {"generator_version": GENERATOR_VERSION, "landmark_names": list(LANDMARK_NAMES), "garments": entries}
    (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1))
    if root.exists():
        old = Path(tempfile.mkdtemp(prefix=".demo-old-", dir=root.parent))
        root.rename(old / "catalog")
        tmp.rename(root)
        for f in sorted((old / "catalog").iterdir()):
            f.unlink()
        (old / "catalog").rmdir()
        old.rmdir()
    else:
        tmp.rename(root)
    os.chmod(root, 0o755)  # noqa: S103 (mkdtemp makes 0700; the web app may run as another user)
    log.info("wrote %d demo garments to %s", len(entries), root)
    return entries
