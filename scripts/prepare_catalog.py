"""Install step: write the demo garment catalog where env_config.json says (paths.catalog_dir/demo).

Idempotent (garments.demo skips a valid catalog). An invalid config is left for the process
that starts next to report (it exits with the one clear config error); this step then skips.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from garments.demo.__main__ import main as demo_main  # noqa: E402
from mirror import ConfigError, load_config  # noqa: E402


def main() -> int:
    try:
        cfg = load_config()
    except ConfigError as exc:
        print(f"prepare_catalog: skipped, the configuration is invalid ({exc})", file=sys.stderr)
        return 0
    out = cfg.path(cfg["paths"]["catalog_dir"]) / "demo"
    return demo_main(["--out", str(out)])


if __name__ == "__main__":
    raise SystemExit(main())
