"""Regenerate gvirtus_pb2.py / gvirtus_pb2_grpc.py from gvirtus.proto (needs grpcio-tools, a dev dependency).

    .venv/bin/python -m gvirtus.proto.regen

The generated modules are committed: the runtime has no grpcio-tools.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def main() -> int:
    from grpc_tools import protoc

    rc = protoc.main(["grpc_tools.protoc", f"-I{ROOT}", f"--python_out={ROOT}", f"--pyi_out={ROOT}",
                      f"--grpc_python_out={ROOT}", str(HERE / "gvirtus.proto")])
    if rc != 0:
        print(f"protoc failed with exit code {rc}", file=sys.stderr)
        return int(rc)
    grpc_file = HERE / "gvirtus_pb2_grpc.py"
    text = grpc_file.read_text(encoding="utf-8")
    # protoc writes `from gvirtus.proto import gvirtus_pb2`; keep it absolute (package import).
    grpc_file.write_text(re.sub(r"^import gvirtus_pb2", "from gvirtus.proto import gvirtus_pb2", text, flags=re.M),
                         encoding="utf-8")
    print(f"regenerated {grpc_file.parent}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
