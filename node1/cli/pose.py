"""``python -m node1.cli pose PHOTO --out KEYPOINTS.json [--device local|remote] [--render POSE.png]``.

Writes OpenPose-layout BODY_25 JSON; with --render also the skeleton PNG (OpenPose colours on black).
--device remote uses the gvirtus backend of env_config.json (node2.host:gvirtus_port), falling back to
the local CPU when it is unreachable; the device that served is printed on stderr.
Exit codes: 0 ok, 1 failure, 2 bad input (no person, unreadable or too small photo) with the message on stderr.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from node1.pose.errors import DeviceUnavailable, PoseError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def _read_photo(path: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    from node1.pose.errors import InvalidImage

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise InvalidImage(f"cannot read photo {path!r}: {exc}") from exc


def run_pose(args: argparse.Namespace) -> int:
    import torch

    from mirror import load_config, setup_logging
    from node1.pose.estimate import estimate_pose
    from node1.pose.keypoints import write_openpose_json
    from node1.tryon.fallback import FallbackDevice
    from viton.skeleton import render_skeleton

    setup_logging("node1.pose")
    torch.set_num_threads(min(2, torch.get_num_threads()))
    connect = None
    if args.device == "remote":
        import gvirtus

        cfg = load_config()

        def connect() -> object:
            return gvirtus.connect_from_config(cfg, client_name="node1.cli pose")

    chooser = FallbackDevice(connect, local="cpu")
    try:
        photo = _read_photo(args.photo)
        result = chooser.run(estimate_pose, photo)
    except PoseError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_FAILURE if isinstance(exc, DeviceUnavailable) else EXIT_BAD_INPUT
    finally:
        chooser.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_openpose_json(args.out, result.body25)
    if args.render:
        from PIL import Image

        Image.fromarray(render_skeleton(result.body25, photo.shape[:2])).save(args.render)
    extra = f", {result.num_people} people (used the largest)" if result.num_people > 1 else ""
    print(f"pose: served by {result.served_by}{extra}; wrote {args.out}", file=sys.stderr)
    return EXIT_OK
