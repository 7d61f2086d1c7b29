"""Loading (and writing) the official checkpoints: ``seg_final.pth``, ``gmm_final.pth``, ``alias_final.pth``.

Files are read with ``torch.load(weights_only=True)`` (no arbitrary pickle code runs) and loaded
with ``strict=True``; anything wrong raises CheckpointError naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from viton.vitonhd.errors import CheckpointError
from viton.vitonhd.networks import NETWORK_NAMES, build_networks
from viton.vitonhd.options import CHECKPOINT_FILES, VitonHDOptions

MAX_LISTED_KEYS = 5  # keys quoted per category in a mismatch message


def checkpoint_paths(checkpoint_dir: str | Path) -> dict[str, Path]:
    """{'seg': dir/seg_final.pth, 'gmm': dir/gmm_final.pth, 'alias': dir/alias_final.pth}."""
    root = Path(checkpoint_dir)
    return {name: root / CHECKPOINT_FILES[name] for name in NETWORK_NAMES}


def check_checkpoint_files(checkpoint_dir: str | Path) -> dict[str, Path]:
    """The three paths, after checking each is a regular file. Raises CheckpointError listing all missing ones."""
    paths = checkpoint_paths(checkpoint_dir)
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise CheckpointError(
            f"missing VITON-HD checkpoint file(s): {', '.join(missing)}; viton.engine = vitonhd needs "
            f"{', '.join(CHECKPOINT_FILES.values())} from the official VITON-HD release in "
            f"viton.checkpoint_dir ({Path(checkpoint_dir).resolve()}), or set viton.engine = geometric"
        )
    return paths


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint's flat state_dict on CPU, read with weights_only=True; every float tensor must be finite."""
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: file not found") from exc
    except Exception as exc:  # torch.load raises many types for corrupt or unsafe files; translate them all
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(f"{path}: not a readable weights-only torch checkpoint "
                              f"({type(exc).__name__}: {first_line[:200]})") from exc
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                               for k, v in obj.items()):
        raise CheckpointError(f"{path}: expected a flat state_dict (str -> tensor), got {type(obj).__name__}")
    for key, value in obj.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(f"{path}: tensor {key!r} holds NaN or infinite values")
    # An OrderedDict from torch.save keeps its `_metadata` (spectral-norm / BatchNorm versions): pass it as is.
    return obj if isinstance(obj, dict) else dict(obj)


def load_checkpoint(net: nn.Module, path: str | Path) -> None:
    """Load ``path`` into ``net`` with strict=True. Raises CheckpointError naming the file and the mismatch."""
    path = Path(path)
    state = read_state_dict(path)
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (want {tuple(v.shape)})" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        parts = [f"{label} {len(keys)}: {', '.join(keys[:MAX_LISTED_KEYS])}"
                 for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                     ("wrong shapes", wrong)) if keys]
        raise CheckpointError(f"{path}: does not fit {type(net).__name__} ({'; '.join(parts)})")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: load_state_dict(strict=True) failed: {exc}") from exc


def load_networks(checkpoint_dir: str | Path, options: VitonHDOptions | None = None) -> dict[str, nn.Module]:
    """Build the three networks (CPU, eval) and load the official checkpoints from ``checkpoint_dir``."""
    paths = check_checkpoint_files(checkpoint_dir)
    nets = build_networks(options, initialize=False)
    for name in NETWORK_NAMES:
        load_checkpoint(nets[name], paths[name])
        nets[name].eval()
    return nets


def save_networks(nets: Mapping[str, nn.Module], checkpoint_dir: str | Path) -> dict[str, Path]:
    """Write each network's state_dict under its official file name (creates the folder)."""
    root = Path(checkpoint_dir)
    root.mkdir(parents=True, exist_ok=True)
    paths = checkpoint_paths(root)
    for name in NETWORK_NAMES:
        torch.save(nets[name].state_dict(), paths[name])
    return paths
