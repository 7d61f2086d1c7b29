"""python -m garments.demo --out DIR [--force]: write the demo catalog (install time, idempotent)."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from garments.demo.catalog import write_demo_catalog


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m garments.demo", description=__doc__)
    ap.add_argument("--out", required=True, help="folder for the demo catalog (e.g. var/catalog/demo)")
    ap.add_argument("--force", action="store_true", help="regenerate even when a valid catalog is present")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    t0 = time.perf_counter()
    try:
        entries = write_demo_catalog(args.out, force=args.force)
    except OSError as exc:
        print(f"garments.demo: cannot write the demo catalog to {args.out!r}: {exc}", file=sys.stderr)
        return 1
    print(f"garments.demo: {len(entries)} garments in {args.out} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
