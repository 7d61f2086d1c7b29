"""viton.vitonhd: VITON-HD (Choi et al., CVPR 2021) as a try-on engine, loadable from the official checkpoints.

An independent implementation of the three networks (segmentation generator, GMM with TPS,
ALIAS generator) and of the official inference contract. Typical use::

    from viton.vitonhd import load_engine
    engine = load_engine("models/vitonhd", device="auto")   # raises CheckpointError if a file is bad
    out = engine.try_on(person, garment)                     # viton.engine.TryOnOutput

Public API: build_networks, load_networks, save_networks, state_dict_signature, load_engine,
VitonHDEngine, make_inputs, VitonHDInputs, run_inference, InferenceResult, VitonHDOptions,
CHECKPOINT_FILES, and the errors VitonHDError, CheckpointError, DeviceUnavailable, InputError,
KeypointsMissing.
"""

from __future__ import annotations

from viton.vitonhd.adapter import Letterbox, VitonHDInputs, make_inputs
from viton.vitonhd.alias import ALIASGenerator
from viton.vitonhd.checkpoint import check_checkpoint_files, load_networks, read_state_dict, save_networks
from viton.vitonhd.engine import VitonHDEngine, load_engine, resolve_device
from viton.vitonhd.errors import CheckpointError, DeviceUnavailable, InputError, KeypointsMissing, VitonHDError
from viton.vitonhd.gmm import GMM
from viton.vitonhd.inference import InferenceResult, run_inference
from viton.vitonhd.networks import NETWORK_NAMES, build_networks, state_dict_signature
from viton.vitonhd.options import CHECKPOINT_FILES, VitonHDOptions
from viton.vitonhd.seg import SegGenerator

__all__ = [
    "CHECKPOINT_FILES",
    "GMM",
    "NETWORK_NAMES",
    "ALIASGenerator",
    "CheckpointError",
    "DeviceUnavailable",
    "InputError",
    "KeypointsMissing",
    "Letterbox",
    "InferenceResult",
    "SegGenerator",
    "VitonHDEngine",
    "VitonHDError",
    "VitonHDInputs",
    "VitonHDOptions",
    "build_networks",
    "check_checkpoint_files",
    "load_engine",
    "load_networks",
    "make_inputs",
    "read_state_dict",
    "resolve_device",
    "run_inference",
    "save_networks",
    "state_dict_signature",
]
