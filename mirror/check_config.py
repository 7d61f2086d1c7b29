"""`python -m mirror.check_config [PATH]`: validate env_config.json and print the effective config.

Exit status 2 with one line on stderr naming the key and value when it is invalid.
"""

from __future__ import annotations

import json
import sys

from mirror.config import load
from mirror.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        cfg = load(args[0] if args else None)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(cfg.as_dict(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
