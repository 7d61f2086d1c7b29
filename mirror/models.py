"""Model files: the pinned manifest (`config/models.json`) and verification.

The `.tflite` files come out of the mediapipe wheel at install time (scripts/fetch_models.py);
mediapipe itself is never a runtime dependency. Every consumer resolves a model through
`model_path(name)`, which checks the file against its pinned sha256 once per process.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from mirror.errors import ModelFileError

ROOT = Path(__file__).resolve().parent.parent
MANIFEST_PATH = ROOT / "config" / "models.json"
DEFAULT_MODELS_DIR = ROOT / "models"


def load_manifest() -> dict:
    with open(MANIFEST_PATH, encoding="utf-8") as f:
        return json.load(f)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(name: str, models_dir: Path = DEFAULT_MODELS_DIR) -> Path:
    """Return the path of model `name` after checking it exists and matches its pinned sha256.

    Raises:
        ModelFileError: unknown name, missing file, or checksum mismatch (message names the file).
    """
    files = load_manifest()["files"]
    if name not in files:
        raise ModelFileError(f"unknown model {name!r}; known models: {sorted(files)}")
    path = Path(models_dir) / name
    if not path.is_file():
        raise ModelFileError(
            f"model file {path} is missing; run scripts/bootstrap.sh (or scripts/fetch_models.py)"
        )
    actual = sha256_file(path)
    if actual != files[name]["sha256"]:
        raise ModelFileError(
            f"model file {path} is corrupt: sha256 {actual} != pinned {files[name]['sha256']}; "
            "delete it and run scripts/fetch_models.py"
        )
    return path


@functools.cache
def model_path(name: str, models_dir: str = str(DEFAULT_MODELS_DIR)) -> Path:
    """Verified path of a model file (checked once per process)."""
    return verify(name, Path(models_dir))
