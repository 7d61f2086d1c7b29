"""Run one fuzz target under atheris (libFuzzer, coverage-guided); used by tests/fuzz/test_fuzz.py.

    .venv/bin/python tests/fuzz/run_atheris.py TARGET [libFuzzer flags] NEW_CORPUS_DIR SEED_CORPUS_DIR...

libFuzzer writes the inputs it finds into the FIRST corpus folder (give it a scratch one) and a
failing input as <-artifact_prefix>crash-*; it exits 0 when the time budget (-max_total_time) ends
with nothing found. Our modules are imported instrumented (tests/fuzz/targets.py INSTRUMENT).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> None:
    import atheris

    if len(sys.argv) < 2:
        raise SystemExit("usage: run_atheris.py TARGET [libFuzzer flags] CORPUS_DIR...")
    name = sys.argv[1]
    from tests.fuzz import targets

    if name not in targets.TARGETS:
        raise SystemExit(f"unknown fuzz target {name!r}; one of {sorted(targets.TARGETS)}")
    with atheris.instrument_imports(include=targets.INSTRUMENT[name]):
        _import_decoders(name)
    target = targets.TARGETS[name]
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


def _import_decoders(name: str) -> None:
    """Import (instrumented) everything the target reaches, before fuzzing starts."""
    if name == "frames":
        import transport.frames  # noqa: F401
    elif name == "gvirtus":
        import gvirtus.codec  # noqa: F401
        import gvirtus.dataserver  # noqa: F401
        import gvirtus.executor  # noqa: F401
        import gvirtus.graph  # noqa: F401
        import gvirtus.protocol  # noqa: F401
    else:
        import PIL.Image
        import PIL.JpegImagePlugin
        import PIL.PngImagePlugin
        import PIL.WebPImagePlugin  # noqa: F401

        import node1.web.uploads  # noqa: F401


if __name__ == "__main__":
    main()
