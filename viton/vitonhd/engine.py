"""VitonHDEngine: the learned VITON-HD try-on behind the viton.engine.Engine interface."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from viton.contract import ENGINE_READS
from viton.engine import GarmentData, PersonData, TryOnOutput
from viton.vitonhd.adapter import make_inputs
from viton.vitonhd.checkpoint import load_networks
from viton.vitonhd.errors import DeviceUnavailable, InputError
from viton.vitonhd.inference import InferenceResult, run_inference
from viton.vitonhd.labels import ALIAS7_UPPER
from viton.vitonhd.networks import NETWORK_NAMES
from viton.vitonhd.options import VitonHDOptions

DEFAULT_SEED = 0
log = logging.getLogger("viton.vitonhd")


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' -> cuda if available else cpu; 'cpu' / 'cuda' / 'cuda:N' checked against this machine."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceUnavailable(f"not a torch device: {device!r} (use auto, cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"device {device!r} requested but CUDA is not available here; use cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"device {device!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
    elif dev.type != "cpu":
        raise DeviceUnavailable(f"device {device!r} is not supported (use auto, cpu, cuda or cuda:N)")
    return dev


def _to_uint8_image(signed: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) in [-1, 1] -> (H, W, 3) uint8, mapped (x + 1) / 2 * 255, clamped, truncated (as the official)."""
    return (signed[0].add(1).div(2).mul(255).clamp(0, 255)).permute(1, 2, 0).to("cpu", torch.uint8).numpy()


class VitonHDEngine:
    """VITON-HD try-on: segmentation, GMM warp and ALIAS synthesis at 1024 x 768.

    Args:
        networks: {'seg', 'gmm', 'alias'} from build_networks() or load_networks(); they are moved to
            ``device`` in place (nn.Module.to) and put in eval mode.
        device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
        seed: seeds the per-call generator of the segmentation and ALIAS noise, so the same input
            always gives the same output (on the same device).
        options: must match how the networks were built (defaults = the published checkpoints).
    """

    name = "vitonhd"
    reads: tuple[str, ...] = ENGINE_READS["vitonhd"]

    def __init__(self, networks: Mapping[str, nn.Module], device: str | torch.device = "cpu", *,
                 seed: int = DEFAULT_SEED, options: VitonHDOptions | None = None):
        missing = [n for n in NETWORK_NAMES if n not in networks]
        if missing:
            raise ValueError(f"networks must hold {NETWORK_NAMES}, missing {missing}")
        self.torch_device = resolve_device(device)
        self.device: str = str(self.torch_device)
        self.seed = seed
        self.options = options or VitonHDOptions()
        self.networks: dict[str, nn.Module] = {n: networks[n].to(self.torch_device).eval() for n in NETWORK_NAMES}
        if self.torch_device.type == "cpu":
            log.warning("vitonhd runs on CPU: expect tens of seconds per 1024x768 try-on (ALIAS is GPU work)")

    def try_on(self, person: PersonData, garment: GarmentData) -> TryOnOutput:
        """Dress ``person`` in ``garment``; raises viton.vitonhd.InputError on bad data."""
        return self.try_on_detailed(person, garment)[0]

    def try_on_detailed(self, person: PersonData, garment: GarmentData) -> tuple[TryOnOutput, InferenceResult]:
        """try_on plus every pipeline intermediate (at the model's 1024 x 768 frame)."""
        if garment.category != "top":   # VITON-HD's published networks dress the upper body only
            raise InputError(f"the vitonhd engine dresses tops only (its published networks are upper-body); "
                               f"garment kind {garment.kind!r} is a {garment.category}: use the geometric engine")
        t0 = time.perf_counter()
        with torch.inference_mode():
            inputs = make_inputs(person, garment, self.options).to(self.torch_device)
            t1 = time.perf_counter()
            if inputs.notes:
                log.info("vitonhd adapter filled keypoints: %s", "; ".join(inputs.notes))
            result = run_inference(self.networks, inputs, self.options, self.seed)
            t2 = time.perf_counter()
            frame = inputs.frame
            image = _to_uint8_image(frame.restore(result.output))
            warped = _to_uint8_image(frame.restore(result.warped_cloth))
            alpha_map = result.parse_div[:, ALIAS7_UPPER:ALIAS7_UPPER + 1]
            alpha = frame.restore(alpha_map)[0, 0].clamp(0, 1).to("cpu", torch.float32).numpy()
        t3 = time.perf_counter()
        timings = {"adapter": (t1 - t0) * 1e3, **result.timings_ms, "postprocess": (t3 - t2) * 1e3,
                   "total": (t3 - t0) * 1e3}
        return TryOnOutput(image=image, warped_garment=warped, garment_alpha=alpha, timings_ms=timings), result


def load_engine(checkpoint_dir: str | Path, device: str | torch.device = "auto", *,
                seed: int = DEFAULT_SEED) -> VitonHDEngine:
    """The engine with the official checkpoints from ``checkpoint_dir``.

    Raises:
        CheckpointError: a file is missing, corrupt or does not fit (the message names the file).
        DeviceUnavailable: ``device`` does not exist here.
    """
    dev = resolve_device(device)  # fail on a bad device before reading 600 MB of weights
    return VitonHDEngine(load_networks(checkpoint_dir), dev, seed=seed)
