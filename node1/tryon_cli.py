"""`python -m node1.cli tryon --photo P --garment G --out O [--in-process]`.

--in-process: decode the photo, run node 1 preprocessing (`node1.preprocess.preprocess`) and the
configured VITON engine here, in one process, no servers. G is a catalog garment id (folder
`paths.catalog_dir`, `garments` public API) or a garment image path (prepared on the fly by
`garments.prepare_garment`). Without --in-process the try-on goes through a running deployment's
web API (node 1 -> node 2); that client is not part of this module yet (exit 1, with the message).
Exit codes: 0 ok, 1 failure, 2 bad input (unreadable photo, no person, unknown garment).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2


class TryOnCliError(Exception):
    """A CLI failure with its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAIL) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _load_rgb(path: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.ascontiguousarray(np.asarray(im.convert("RGB")))
    except (OSError, ValueError) as exc:
        raise TryOnCliError(f"cannot read image {path!r}: {exc}", EXIT_BAD_INPUT) from exc


def _garment(spec: str, cfg: Any) -> Any:
    """GarmentData from a catalog id or an image path."""
    from viton import GarmentData

    garments = importlib.import_module("garments")
    if Path(spec).is_file():
        prepare = getattr(garments, "prepare_garment", None)
        if prepare is None:
            raise TryOnCliError("garment preparation (garments.prepare_garment) is not available yet")
        g = prepare(_load_rgb(spec))
    else:
        load = getattr(garments, "load_catalog", None)
        if load is None:
            raise TryOnCliError("the garment catalog loader (garments.load_catalog) is not available yet")
        catalog = load(cfg.path(cfg["paths"]["catalog_dir"]))
        g = catalog.get(spec) if hasattr(catalog, "get") else None
        if g is None:
            raise TryOnCliError(f"no garment {spec!r} in the catalog and no such file", EXIT_BAD_INPUT)
    return GarmentData(image=g.image, mask=g.mask, landmarks=np.asarray(g.landmarks, np.float32), kind=g.kind)


def _first(obj: Any, *names: str) -> Any:
    for n in names:
        v = obj.get(n) if isinstance(obj, dict) else getattr(obj, n, None)
        if v is not None:
            return v
    return None


def _person(photo: np.ndarray) -> Any:
    """PersonData from node 1 preprocessing run locally."""
    from viton import PersonData

    try:
        pre = importlib.import_module("node1.preprocess")
    except ModuleNotFoundError as exc:
        raise TryOnCliError(f"node 1 preprocessing (node1.preprocess) is not available: {exc}") from exc
    try:
        res = pre.preprocess(photo, device="local")
    except Exception as exc:
        code = EXIT_BAD_INPUT if "person" in type(exc).__name__.lower() else EXIT_FAIL
        raise TryOnCliError(f"preprocessing failed: {type(exc).__name__}: {exc}", code) from exc
    kp = _first(res, "keypoints", "body25")
    if kp is None and _first(res, "pose") is not None:
        kp = _first(res.pose if not isinstance(res, dict) else res["pose"], "body25", "keypoints")
    mask = _first(res, "person_mask", "mask")
    return PersonData(image=photo, parse=np.asarray(_first(res, "parse", "parse_map"), np.uint8),
                      keypoints=np.asarray(kp, np.float32).reshape(25, 3),
                      pose_render=np.asarray(_first(res, "pose_render", "rendered_pose", "render"), np.uint8),
                      person_mask=None if mask is None else np.asarray(mask, np.float32))


def run_in_process(args: argparse.Namespace) -> int:
    from mirror import load_config
    from viton import VitonError, make_engine

    cfg = load_config()
    photo = _load_rgb(args.photo)
    garment = _garment(args.garment, cfg)
    person = _person(photo)
    vt = cfg["viton"]
    engine = make_engine(vt["engine"], device=vt.get("device", "auto"),
                         checkpoint_dir=cfg.path(vt["checkpoint_dir"]) if vt.get("checkpoint_dir") else None)
    try:
        result = engine.try_on(person, garment)
    except VitonError as exc:
        raise TryOnCliError(f"try-on failed ({exc.code}): {exc}", EXIT_BAD_INPUT) from exc
    Image.fromarray(result.image).save(args.out)
    timings = ", ".join(f"{k} {v:.1f} ms" for k, v in result.timings_ms.items())
    print(f"wrote {args.out} ({engine.name} on {engine.device}: {timings})")
    return EXIT_OK


def run_tryon(args: argparse.Namespace) -> int:
    """Entry point of the `tryon` subcommand (see module docstring)."""
    try:
        if not args.in_process:
            raise TryOnCliError("tryon without --in-process talks to a running deployment's web API; that "
                                "client is not implemented yet. Use --in-process to run everything here.")
        return run_in_process(args)
    except TryOnCliError as exc:
        print(f"tryon: {exc}", file=sys.stderr)
        return exc.exit_code
