"""TFLite -> torch: run the pretrained mediapipe ``.tflite`` models as ordinary torch modules.

Public face:
    load_tflite(path, layout="nhwc", name=None) -> torch.fx.GraphModule
        Reads the flatbuffer with the ``tflite`` package and builds an ``nn.Module`` whose constants are
        buffers (``.to(device)`` moves everything; make_fx / torch.export trace it; any batch size works).
        fp16 DEQUANTIZE and sparse DENSIFY constants are folded to float32 at load time.
        layout="nhwc": rank-4 inputs/outputs as in TFLite, (B, H, W, C) float32.
        layout="nchw": rank-4 inputs/outputs channels-first, (B, C, H, W) float32 (what a torch pipeline wants).
        The module carries ``model_name``, ``input_names``, ``output_names`` (TFLite tensor names, in order).
    load_model(name, layout="nhwc") -> same, for a file of models/ resolved (and sha256-checked) by
        ``mirror.model_path``, e.g. ``load_model("pose_detection.tflite")``.
    read_model(path) -> ModelIR              the parsed graph (ops, tensors, folded constants)
    optimize_for_cpu(module, example) -> nn.Module   CPU-only lowering (channels-last, fused oneDNN convs,
                                             pre-packed weights; input layout "nchw"), checked against the
                                             portable module; not traceable for gvirtus (use the portable one)
    SUPPORTED_OPS                            op names the loader converts
    errors: TFLiteError, ModelFormatError, UnsupportedOp (names the op and the model)
"""

from __future__ import annotations

from pathlib import Path

from torch import fx

from node1.tflite.builder import SUPPORTED_OPS, build_module
from node1.tflite.cpu import optimize_for_cpu
from node1.tflite.errors import ModelFormatError, TFLiteError, UnsupportedOp
from node1.tflite.reader import ModelIR, read_model

_LAYOUTS = ("nhwc", "nchw")


def load_tflite(path: str | Path, layout: str = "nhwc", name: str | None = None) -> fx.GraphModule:
    """Load a TFLite model file as a torch module in eval mode (see the module docstring)."""
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}")
    ir = read_model(path, name=name)
    gm = build_module(ir, layout=layout).eval()
    # plain attributes (not buffers): object.__setattr__ keeps nn.Module's typing out of the way
    object.__setattr__(gm, "model_name", ir.name)
    object.__setattr__(gm, "input_names", [ir.tensors[i].name for i in ir.inputs])
    object.__setattr__(gm, "output_names", [ir.tensors[i].name for i in ir.outputs])
    return gm


def load_model(file_name: str, layout: str = "nhwc") -> fx.GraphModule:
    """Load ``models/<file_name>`` after its pinned sha256 check (``mirror.model_path``)."""
    from mirror import model_path

    return load_tflite(model_path(file_name), layout=layout, name=Path(file_name).stem)


__all__ = [
    "SUPPORTED_OPS", "ModelFormatError", "ModelIR", "TFLiteError", "UnsupportedOp",
    "load_model", "load_tflite", "optimize_for_cpu", "read_model",
]
