"""Command line for people who prepare try-on data and for batch use.

    python -m node1.cli pose PHOTO --out KEYPOINTS.json [--device local|remote] [--render POSE.png]
    python -m node1.cli parse PHOTO --out PARSE.png [--device local|remote]
    python -m node1.cli prepare-dataset --photos DIR --garments DIR --out DIR [--json]
    python -m node1.cli tryon --photo P --garment G --out O [--in-process]

Each subcommand lives with its feature; this module only parses arguments and dispatches.
Exit codes: 0 ok, 1 failure, 2 bad input (e.g. no person in the photo) with the message on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> "module:function"; the function takes the parsed args and returns an exit code.
COMMANDS = {
    "pose": "node1.cli.pose:run_pose",
    "parse": "node1.cli.parse:run_parse",
    "prepare-dataset": "node1.cli.parse:run_prepare_dataset",
    "tryon": "node1.cli.tryon:run_tryon",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m node1.cli", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    pose = sub.add_parser("pose", help="BODY_25 keypoints of the person in a photo (OpenPose JSON)")
    pose.add_argument("photo")
    pose.add_argument("--out", required=True, help="OpenPose-layout JSON to write")
    pose.add_argument("--device", choices=["local", "remote"], default="local")
    pose.add_argument("--render", help="also write the rendered skeleton PNG here")
    parse = sub.add_parser("parse", help="CIHP-20 human parsing label PNG of a photo")
    parse.add_argument("photo")
    parse.add_argument("--out", required=True)
    parse.add_argument("--device", choices=["local", "remote"], default="local")
    prep = sub.add_parser("prepare-dataset", help="write VITON-HD's test layout for photos x garments")
    prep.add_argument("--photos", required=True)
    prep.add_argument("--garments", required=True)
    prep.add_argument("--out", required=True)
    prep.add_argument("--json", action="store_true", help="print the report (people, skipped, warnings) as JSON")
    tryon = sub.add_parser("tryon", help="dress a photo in a garment")
    tryon.add_argument("--photo", required=True)
    tryon.add_argument("--garment", required=True, help="catalog garment id or an image path")
    tryon.add_argument("--out", required=True)
    tryon.add_argument("--in-process", action="store_true", help="run everything here, no servers")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func_name = COMMANDS[args.command].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(args))


if __name__ == "__main__":
    sys.exit(main())
