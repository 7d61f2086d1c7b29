"""viton: try-on engines (`geometric`, `vitonhd`), the try-on service, and its input contract.

Public face:
    contract                                       the try-on messages (viton/contract.py; numpy only)
    PersonData, GarmentData, TryOnOutput, Engine   the engine interface (viton/engine.py)
    make_engine(name, device, checkpoint_dir)      build the engine named in viton.engine
    engine_from_config(cfg)                        the engine env_config.json's viton section configures
    GeometricEngine                                the weight-free default engine (imported on first use)
    errors: VitonError, InvalidInput, PoseIncomplete, LegsNotInView, UnknownEngine, EngineConfigError,
            EngineFailed
The service is `python -m viton.service` (viton/service.py).

Importing `viton` (or `viton.contract`) loads no engine and no torch: the gateway and node 1's web
process import the contract alone; an engine's code loads when it is built.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from viton import contract
from viton.engine import Engine, GarmentData, PersonData, TryOnOutput
from viton.errors import (
    EngineConfigError,
    EngineFailed,
    InvalidInput,
    LegsNotInView,
    PoseIncomplete,
    UnknownEngine,
    VitonError,
)

if TYPE_CHECKING:
    from viton.geometric import GeometricEngine

ENGINE_NAMES = tuple(contract.ENGINE_READS)


def make_engine(name: str, device: str = "auto", checkpoint_dir: str | Path | None = None) -> Engine:
    """Build a try-on engine; load its weights once, here.

    Args:
        name: "geometric" (no weights) or "vitonhd" (VITON-HD checkpoints in `checkpoint_dir`).
        device: "auto", "cpu", "cuda", "cuda:N" (the geometric engine always runs on the CPU).
        checkpoint_dir: folder of seg_final.pth, gmm_final.pth, alias_final.pth (vitonhd only).
    Raises:
        UnknownEngine: for any other name.
        EngineConfigError: vitonhd without a checkpoint_dir.
        viton.vitonhd's CheckpointError (propagated unchanged): missing or mismatched checkpoints.
            There is no fallback to another engine: a service configured for vitonhd without
            its weights must refuse to start and say why.
    """
    if name == "geometric":
        from viton.geometric import GeometricEngine

        return GeometricEngine(device=device)
    if name == "vitonhd":
        if checkpoint_dir is None:
            raise EngineConfigError("the vitonhd engine needs checkpoint_dir (viton.checkpoint_dir): the folder "
                                    "holding seg_final.pth, gmm_final.pth and alias_final.pth")
        vitonhd = importlib.import_module("viton.vitonhd")  # heavy networks: only when asked for
        engine: Engine = vitonhd.load_engine(checkpoint_dir, device=device)
        return engine
    raise UnknownEngine(f"viton.engine = {name!r} is not an engine; choose one of {', '.join(ENGINE_NAMES)}")


def engine_from_config(cfg: Any) -> Engine:
    """The engine env_config.json configures: viton.engine on viton.device, weights from viton.checkpoint_dir.
    The one place that reads those keys (the service process and node 1's in-process runner alike)."""
    vt = cfg["viton"]
    ckpt = cfg.path(vt["checkpoint_dir"]) if vt.get("checkpoint_dir") else None
    return make_engine(vt["engine"], device=vt.get("device", "auto"), checkpoint_dir=ckpt)


def __getattr__(name: str) -> Any:
    if name == "GeometricEngine":  # torch and kornia: loaded on first use, not by `import viton`
        from viton.geometric import GeometricEngine

        return GeometricEngine
    raise AttributeError(f"module 'viton' has no attribute {name!r}")


__all__ = [
    "ENGINE_NAMES", "Engine", "EngineConfigError", "EngineFailed", "GarmentData", "GeometricEngine", "InvalidInput",
    "LegsNotInView", "PersonData", "PoseIncomplete", "TryOnOutput", "UnknownEngine", "VitonError", "contract",
    "engine_from_config", "make_engine",
]
