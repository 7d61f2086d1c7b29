"""`python -m node1.cli parse` and `prepare-dataset` (dispatched by node1.cli).

    python -m node1.cli parse PHOTO --out PARSE.png [--device local|remote]
    python -m node1.cli prepare-dataset --photos DIR --garments DIR --out DIR

Exit codes: 0 ok, 1 failure (e.g. the remote device is unreachable), 2 bad input (unreadable photo,
no person in it, an empty folder) with the message on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def _device(choice: str) -> Any:
    """"local" -> the CPU; "remote" -> a gvirtus session to node 2 from env_config (node2.*, gvirtus.*)."""
    if choice == "local":
        return "cpu"
    import gvirtus
    from mirror import load_config

    return gvirtus.connect_from_config(load_config(), client_name="node1.cli")


def _close(device: Any) -> None:
    """Close a gvirtus session opened by _device (a local device string needs nothing)."""
    if device is not None and hasattr(device, "close"):
        device.close()


def _err(message: str, code: int) -> int:
    print(message, file=sys.stderr)
    return code


def run_parse(args: argparse.Namespace) -> int:
    """Write the CIHP-20 label PNG (palette "P", pixel values = labels) of the person in args.photo."""
    from gvirtus import GvirtusError
    from node1.cli.dataset import read_rgb
    from node1.parsing.labels import save_parse_png
    from node1.pose import PoseError
    from node1.tryon.preprocess import preprocess

    try:
        image = read_rgb(Path(args.photo))
    except (ValueError, OSError) as exc:
        return _err(f"parse: cannot use {args.photo}: {exc}", EXIT_BAD_INPUT)
    device: Any = None
    try:
        device = _device(args.device)
        pre = preprocess(image, device)
    except PoseError as exc:
        return _err(f"parse: {args.photo}: {exc}", EXIT_BAD_INPUT)
    except GvirtusError as exc:
        return _err(f"parse: the remote device failed: {exc}", EXIT_FAILURE)
    finally:
        _close(device)
    try:
        save_parse_png(pre.parse, args.out)
    except OSError as exc:
        return _err(f"parse: cannot write {args.out}: {exc}", EXIT_FAILURE)
    print(f"{args.out}: {pre.parse.shape[1]}x{pre.parse.shape[0]} CIHP labels "
          f"({pre.timings_ms['total']:.0f} ms on {pre.device})")
    return EXIT_OK


def run_prepare_dataset(args: argparse.Namespace) -> int:
    """Write VITON-HD's test layout for every photo x every garment (see node1.cli.dataset)."""
    from gvirtus import GvirtusError
    from node1.cli.dataset import prepare_dataset
    from node1.parsing.errors import DatasetError

    device: Any = None
    try:
        device = _device(getattr(args, "device", "local"))
        rep = prepare_dataset(Path(args.photos), Path(args.garments), Path(args.out), device)
    except DatasetError as exc:
        return _err(f"prepare-dataset: {exc}", EXIT_BAD_INPUT)
    except GvirtusError as exc:
        return _err(f"prepare-dataset: the remote device failed: {exc}", EXIT_FAILURE)
    except OSError as exc:
        return _err(f"prepare-dataset: cannot write under {args.out}: {exc}", EXIT_FAILURE)
    finally:
        _close(device)
    if getattr(args, "json", False):
        print(json.dumps(rep.as_json()))
        return EXIT_OK
    print(f"{args.out}: {len(rep.people)} people, {len(rep.garments)} garments, {rep.pairs} pairs; "
          f"{len(rep.skipped)} files skipped, {len(rep.warnings)} warnings")
    for name, why in rep.skipped.items():
        print(f"  skipped {name}: {why}")
    for name, why in rep.warnings.items():
        print(f"  warning {name}: {why}")
    return EXIT_OK
