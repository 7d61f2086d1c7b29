"""Read a TFLite flatbuffer into a small plain IR: tensors, constants and ops with decoded options.

Constant sub-graphs that only exist for storage are folded here, at load time:
fp16 weights behind DEQUANTIZE become float32 constants, and sparse weights behind DENSIFY
(dense dims + CSR dims, identity traversal order) become dense arrays. The ops that remain are
the ones that compute on activations.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tflite
from tflite.BuiltinOperator import BuiltinOperator

from node1.tflite.errors import ModelFormatError, UnsupportedOp

_OP_NAMES = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
_NP_TYPES = {
    0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64,
    6: np.bool_, 7: np.int16, 9: np.int8, 10: np.float64,
}
_OPTION_CLASSES = {
    "CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
    "MAX_POOL_2D": "Pool2DOptions", "AVERAGE_POOL_2D": "Pool2DOptions",
    "ADD": "AddOptions", "MUL": "MulOptions", "CONCATENATION": "ConcatenationOptions",
    "RESHAPE": "ReshapeOptions", "RESIZE_BILINEAR": "ResizeBilinearOptions",
    "DEPTH_TO_SPACE": "DepthToSpaceOptions",
}
_DENSE, _SPARSE_CSR = 0, 1


@dataclass
class TensorInfo:
    """One tensor of the graph: name, TF-layout shape, numpy dtype."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: Any


@dataclass
class OpInfo:
    """One op: its name (``CONV_2D`` or ``CUSTOM:Name``), tensor indices and decoded options."""

    name: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)
    custom_options: bytes = b""


@dataclass
class ModelIR:
    """A whole single-subgraph model after constant folding."""

    name: str
    tensors: dict[int, TensorInfo]
    constants: dict[int, np.ndarray]
    ops: list[OpInfo]
    inputs: list[int]
    outputs: list[int]


def _options(op: Any, name: str) -> dict[str, Any]:
    cls_name = _OPTION_CLASSES.get(name)
    table = op.BuiltinOptions()
    if cls_name is None or table is None:
        return {}
    cls = getattr(tflite, cls_name)
    opt = cls()
    opt.Init(table.Bytes, table.Pos)
    out: dict[str, Any] = {}
    for attr in dir(cls):
        if attr.startswith(("_", "GetRootAs", "Init")) or attr.endswith(("BufferHasIdentifier", "IsNone", "Length")):
            continue
        if attr.endswith("AsNumpy"):
            continue
        if attr == "NewShape":
            out[attr] = [int(v) for v in opt.NewShapeAsNumpy()] if not opt.NewShapeIsNone() else []
        else:
            out[attr] = getattr(opt, attr)()
    return out


def _vector(table: Any, kind: int) -> np.ndarray:
    cls = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}[kind]
    vec = cls()
    vec.Init(table.Bytes, table.Pos)
    return np.asarray(vec.ValuesAsNumpy()).astype(np.int64)


def densify(values: np.ndarray, shape: tuple[int, ...], sparsity: Any, model: str) -> np.ndarray:
    """Expand TFLite's sparse storage (per-dim DENSE or SPARSE_CSR, identity order, no blocks) to dense.

    Node numbering follows TFLite: a DENSE dim of size n gives child ``parent * n + i``; a CSR dim gives
    children ``segments[parent] .. segments[parent + 1]`` whose coordinates are ``indices[k]``.
    """
    order = list(sparsity.TraversalOrderAsNumpy())
    if order != list(range(len(shape))) or sparsity.BlockMapLength():
        raise UnsupportedOp("DENSIFY", model, f"traversal order {order} with block map is not implemented")
    node = np.zeros(1, dtype=np.int64)
    pos = np.zeros(1, dtype=np.int64)
    for d in range(sparsity.DimMetadataLength()):
        meta = sparsity.DimMetadata(d)
        size = shape[d]
        if meta.Format() == _DENSE:
            n = meta.DenseSize()
            step = np.arange(n, dtype=np.int64)
            node = (node[:, None] * n + step).ravel()
            pos = (pos[:, None] * size + step).ravel()
        elif meta.Format() == _SPARSE_CSR:
            seg = _vector(meta.ArraySegments(), meta.ArraySegmentsType())
            idx = _vector(meta.ArrayIndices(), meta.ArrayIndicesType())
            counts = seg[node + 1] - seg[node]
            child = np.concatenate([np.arange(seg[p], seg[p + 1]) for p in node]) if len(node) else node
            pos = np.repeat(pos, counts) * size + idx[child]
            node = child
        else:
            raise UnsupportedOp("DENSIFY", model, f"dimension format {meta.Format()}")
    dense = np.zeros(int(np.prod(shape)), dtype=values.dtype)
    dense[pos] = values[node]
    return dense.reshape(shape)


def read_model(path: str | Path, name: str | None = None) -> ModelIR:
    """Parse ``path`` into a :class:`ModelIR` with DEQUANTIZE/DENSIFY of constants folded.

    Raises:
        ModelFormatError: unreadable file or more than one subgraph.
        UnsupportedOp: DEQUANTIZE/DENSIFY forms the loader cannot fold.
    """
    path = Path(path)
    model_name = name or path.stem
    try:
        buf = path.read_bytes()
        model = tflite.Model.GetRootAsModel(buf, 0)
        n_sub = model.SubgraphsLength()
    except (OSError, ValueError, IndexError, struct.error) as exc:  # flatbuffers raises plain errors on garbage
        raise ModelFormatError(f"cannot read TFLite model {path}: {exc}") from exc
    if n_sub != 1:
        raise ModelFormatError(f"model {model_name!r} has {n_sub} subgraphs; node1.tflite supports exactly 1")
    g = model.Subgraphs(0)
    tensors: dict[int, TensorInfo] = {}
    constants: dict[int, np.ndarray] = {}
    sparse: dict[int, Any] = {}
    for i in range(g.TensorsLength()):
        t = g.Tensors(i)
        if t.Type() not in _NP_TYPES:
            raise ModelFormatError(f"model {model_name!r}: tensor {t.Name()!r} has unsupported type {t.Type()}")
        dtype = _NP_TYPES[t.Type()]
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if not t.ShapeIsNone() else ()
        tensors[i] = TensorInfo(i, t.Name().decode(), shape, dtype)
        data = model.Buffers(t.Buffer()).DataAsNumpy() if t.Buffer() else 0
        if isinstance(data, np.ndarray) and data.size:
            arr: np.ndarray = np.frombuffer(data.tobytes(), dtype=dtype)
            if t.Sparsity() is not None:
                sparse[i] = t.Sparsity()
                constants[i] = arr.copy()
            else:
                constants[i] = arr.reshape(shape).copy()
    ops: list[OpInfo] = []
    for k in range(g.OperatorsLength()):
        op = g.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        op_name = _OP_NAMES.get(builtin, f"BUILTIN_{builtin}")
        if op_name == "CUSTOM":
            op_name = "CUSTOM:" + (code.CustomCode() or b"").decode()
        ins = [int(x) for x in op.InputsAsNumpy()] if not op.InputsIsNone() else []
        outs = [int(x) for x in op.OutputsAsNumpy()]
        if op_name in ("DEQUANTIZE", "DENSIFY") and ins[0] in constants:
            src = constants.pop(ins[0])
            if op_name == "DENSIFY":
                src = densify(src, tensors[ins[0]].shape, sparse.pop(ins[0]), model_name)
            constants[outs[0]] = src.astype(tensors[outs[0]].dtype).reshape(tensors[outs[0]].shape)
            continue
        custom = op.CustomOptionsAsNumpy().tobytes() if not op.CustomOptionsIsNone() else b""
        ops.append(OpInfo(op_name, ins, outs, _options(op, op_name), custom))
    if sparse:
        names = [tensors[i].name for i in sparse]
        raise UnsupportedOp("DENSIFY", model_name, f"sparse tensors not behind a foldable DENSIFY: {names}")
    return ModelIR(
        model_name, tensors, constants, ops,
        [int(x) for x in g.InputsAsNumpy()], [int(x) for x in g.OutputsAsNumpy()],
    )
