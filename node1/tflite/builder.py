"""Turn a :class:`ModelIR` into a ``torch.fx.GraphModule`` whose constants are buffers.

Layout: activations of rank 4 run channels-first (NCHW) inside the module, everything else keeps its
TFLite layout; constants are converted once, at load time. TF ``SAME`` padding is computed per op
(it may be asymmetric); a spatial zero PAD feeding a VALID convolution is folded into the convolution
when the result is symmetric. The generated module is plain Python code over ``torch.nn.functional``,
so it moves to any device, traces with make_fx/torch.export and accepts any batch size.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

from node1.tflite.errors import UnsupportedOp
from node1.tflite.reader import ModelIR, OpInfo

_SAME = 0
_NHWC_TO_NCHW_AXIS = {0: 0, 1: 2, 2: 3, 3: 1}


def _fused(g: fx.Graph, node: fx.Node, code: int, op: str, model: str) -> fx.Node:
    if code == 0:
        return node
    if code == 1:
        return g.call_function(F.relu, (node,))
    if code == 3:
        return g.call_function(F.relu6, (node,))
    if code == 2:
        return g.call_function(torch.clamp, (node, -1.0, 1.0))
    if code == 4:
        return g.call_function(torch.tanh, (node,))
    raise UnsupportedOp(op, model, f"fused activation {code}")


def same_pads(size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF SAME padding (before, after) for one spatial axis; ``after`` may exceed ``before`` by one."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class _Builder:
    def __init__(self, ir: ModelIR, layout: str) -> None:
        self.ir = ir
        self.layout = layout
        self.g = fx.Graph()
        self.root = nn.Module()
        self.env: dict[int, fx.Node] = {}
        self.pads: dict[int, tuple[int, int, int, int, int]] = {}  # tensor -> (src, t, b, l, r) of a spatial PAD
        self.uses: dict[int, int] = {}
        for op in ir.ops:
            for i in op.inputs:
                self.uses[i] = self.uses.get(i, 0) + 1
        for o in ir.outputs:
            self.uses[o] = self.uses.get(o, 0) + 1
        self.n_buf = 0

    # -- helpers ---------------------------------------------------------------------------------
    def buffer(self, arr: np.ndarray | torch.Tensor, hint: str) -> fx.Node:
        name = f"{hint}_{self.n_buf}"
        self.n_buf += 1
        t = torch.as_tensor(arr) if isinstance(arr, np.ndarray) else arr
        # canonical strides even for size-1 dims (numpy keeps odd ones; torch then picks channels_last for
        # a (O, I, 1, 1) weight, and a graph traced with it no longer replays with plainly-strided weights)
        canonical = torch.empty(t.shape, dtype=t.dtype)
        canonical.copy_(t)
        self.root.register_buffer(name, canonical)
        return self.g.get_attr(name)

    def const(self, idx: int) -> np.ndarray:
        return self.ir.constants[idx]

    def rank(self, idx: int) -> int:
        return len(self.ir.tensors[idx].shape)

    def value(self, idx: int, like_rank4: bool = False) -> fx.Node:
        """Node for tensor ``idx``; a constant becomes a buffer (NCHW-converted if it meets a rank-4 activation)."""
        if idx in self.env:
            return self.env[idx]
        arr = self.const(idx)
        if arr.dtype == np.float16:
            arr = arr.astype(np.float32)
        if like_rank4 and arr.ndim <= 4:
            arr = arr.reshape((1,) * (4 - arr.ndim) + arr.shape).transpose(0, 3, 1, 2)
        return self.buffer(arr, "const")

    def fail(self, op: OpInfo, detail: str) -> UnsupportedOp:
        return UnsupportedOp(op.name, self.ir.name, detail)

    # -- ops -------------------------------------------------------------------------------------
    def conv(self, op: OpInfo, depthwise: bool) -> fx.Node:
        o = op.options
        w = self.const(op.inputs[1]).astype(np.float32)
        bias = self.const(op.inputs[2]).astype(np.float32) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
        x_idx = op.inputs[0]
        _, h, wd, cin = self.ir.tensors[x_idx].shape
        if depthwise:
            weight = w.transpose(3, 0, 1, 2)  # (1, kh, kw, C*M) -> (C*M, 1, kh, kw)
            groups = cin
        else:
            weight = w.transpose(0, 3, 1, 2)  # OHWI -> OIHW
            groups = 1
            if weight.shape[1] != cin:
                groups = cin // weight.shape[1]
        kh, kw = weight.shape[2:]
        sh, sw = o["StrideH"], o["StrideW"]
        dh, dw = o.get("DilationHFactor", 1), o.get("DilationWFactor", 1)
        if o["Padding"] == _SAME:
            t, b = same_pads(h, kh, sh, dh)
            left, r = same_pads(wd, kw, sw, dw)
        else:
            t = b = left = r = 0
        x = self.env[x_idx]
        if x_idx in self.pads and self.uses[x_idx] == 1:  # fold the preceding spatial PAD
            src, pt, pb, pl, pr = self.pads[x_idx]
            x = self.env[src]
            t, b, left, r = t + pt, b + pb, left + pl, r + pr
        if t == b and left == r:
            padding: tuple[int, int] = (t, left)
        else:
            x = self.g.call_function(F.pad, (x, (left, r, t, b)))
            padding = (0, 0)
        args = (x, self.buffer(weight, "w"), self.buffer(bias, "b") if bias is not None else None,
                (sh, sw), padding, (dh, dw), groups)
        return _fused(self.g, self.g.call_function(F.conv2d, args), o["FusedActivationFunction"], op.name,
                      self.ir.name)

    def transpose_conv_bias(self, op: OpInfo) -> fx.Node:
        # mediapipe's Convolution2DTransposeBias: custom options are
        # TfLiteTransposeConvParams{padding, stride_w, stride_h} as three int32
        pad_code, sw, sh = struct.unpack("<3i", op.custom_options[:12])
        w = self.const(op.inputs[1]).astype(np.float32)  # (O, kh, kw, I)
        bias = self.const(op.inputs[2]).astype(np.float32)
        out_h, out_w = self.ir.tensors[op.outputs[0]].shape[1:3]
        _, in_h, in_w, _ = self.ir.tensors[op.inputs[0]].shape
        kh, kw = w.shape[1:3]
        if pad_code == 1:  # SAME: output = input * stride, crop the overhang, more at the end
            th, tw = max((in_h - 1) * sh + kh - out_h, 0), max((in_w - 1) * sw + kw - out_w, 0)
        elif pad_code == 2:
            th = tw = 0
        else:
            raise self.fail(op, f"padding code {pad_code}")
        y = self.g.call_function(F.conv_transpose2d, (
            self.env[op.inputs[0]], self.buffer(w.transpose(3, 0, 1, 2), "w"), self.buffer(bias, "b"), (sh, sw)))
        if th or tw:
            y = self.g.call_function(operator.getitem, (y, (
                slice(None), slice(None), slice(th // 2, th // 2 + out_h), slice(tw // 2, tw // 2 + out_w))))
        return y

    def pool(self, op: OpInfo, kind: str) -> fx.Node:
        o = op.options
        k, s = (o["FilterHeight"], o["FilterWidth"]), (o["StrideH"], o["StrideW"])
        _, h, w, _ = self.ir.tensors[op.inputs[0]].shape
        x = self.env[op.inputs[0]]
        t = b = left = r = 0
        if o["Padding"] == _SAME:
            t, b = same_pads(h, k[0], s[0])
            left, r = same_pads(w, k[1], s[1])
        if kind == "max":
            if t or b or left or r:
                x = self.g.call_function(F.pad, (x, (left, r, t, b)), {"value": float("-inf")})
            y = self.g.call_function(F.max_pool2d, (x, k, s))
        elif (h, w) == k and not (t or b or left or r):
            y = self.g.call_function(torch.mean, (x, (2, 3)), {"keepdim": True})
        else:
            ones = torch.ones(1, 1, h, w)
            if t or b or left or r:  # TF averages over real pixels only
                x = self.g.call_function(F.pad, (x, (left, r, t, b)))
                ones = F.pad(ones, (left, r, t, b))
            count = F.avg_pool2d(ones, k, s)
            y = self.g.call_function(operator.truediv, (
                self.g.call_function(F.avg_pool2d, (x, k, s)), self.buffer(count, "count")))
        return _fused(self.g, y, o["FusedActivationFunction"], op.name, self.ir.name)

    def binary(self, op: OpInfo, fn: Callable[..., Any]) -> fx.Node:
        r4 = any(i in self.env and self.rank(i) == 4 for i in op.inputs)
        a, b = (self.value(i, like_rank4=r4) for i in op.inputs)
        y = self.g.call_function(fn, (a, b))
        return _fused(self.g, y, op.options.get("FusedActivationFunction", 0), op.name, self.ir.name)

    def pad(self, op: OpInfo) -> fx.Node:
        p = self.const(op.inputs[1]).astype(int).tolist()  # NHWC [[b0,b1],[t,b],[l,r],[c0,c1]]
        if len(op.inputs) > 2:
            raise self.fail(op, "PADV2 constant value")
        if len(p) != 4:
            raise self.fail(op, f"rank {len(p)} padding")
        if p[0] != [0, 0]:
            raise self.fail(op, "batch padding")
        x = self.env[op.inputs[0]]
        if p[3] == [0, 0]:
            self.pads[op.outputs[0]] = (op.inputs[0], p[1][0], p[1][1], p[2][0], p[2][1])
        return self.g.call_function(F.pad, (x, (p[2][0], p[2][1], p[1][0], p[1][1], p[3][0], p[3][1])))

    def reshape(self, op: OpInfo) -> fx.Node:
        x = self.env[op.inputs[0]]
        if self.rank(op.inputs[0]) == 4:
            x = self.g.call_function(torch.permute, (x, (0, 2, 3, 1)))
        out_shape = list(self.ir.tensors[op.outputs[0]].shape)
        batch = self.g.call_function(operator.getitem, (self.g.call_method("size", (x,)), 0))
        y = self.g.call_method("reshape", (x, [batch, *out_shape[1:]]))
        if len(out_shape) == 4:
            y = self.g.call_function(torch.permute, (y, (0, 3, 1, 2)))
        return y

    def concat(self, op: OpInfo) -> fx.Node:
        r = self.rank(op.outputs[0])
        axis = op.options["Axis"] % r
        if r == 4:
            axis = _NHWC_TO_NCHW_AXIS[axis]
        xs = [self.value(i, like_rank4=r == 4) for i in op.inputs]
        y = self.g.call_function(torch.cat, (xs, axis))
        return _fused(self.g, y, op.options.get("FusedActivationFunction", 0), op.name, self.ir.name)

    def resize(self, op: OpInfo) -> fx.Node:
        o = op.options
        size = [int(v) for v in self.const(op.inputs[1])]
        if o["AlignCorners"]:
            kw: dict[str, Any] = {"align_corners": True}
        elif o["HalfPixelCenters"]:
            kw = {"align_corners": False}
        else:
            raise self.fail(op, "legacy (non half-pixel, non align-corners) sampling")
        return self.g.call_function(F.interpolate, (self.env[op.inputs[0]],), {"size": size, "mode": "bilinear", **kw})

    def depth_to_space(self, op: OpInfo) -> fx.Node:
        # TF order: out[h*bs+i, w*bs+j, c] = in[h, w, (i*bs+j)*C + c] (pixel_shuffle uses c*bs*bs + i*bs + j)
        bs = op.options["BlockSize"]
        _, h, w, c = self.ir.tensors[op.inputs[0]].shape
        co = c // (bs * bs)
        x = self.g.call_method("reshape", (self.env[op.inputs[0]], (-1, bs, bs, co, h, w)))
        x = self.g.call_function(torch.permute, (x, (0, 3, 4, 1, 5, 2)))
        return self.g.call_method("reshape", (x, (-1, co, h * bs, w * bs)))

    def prelu(self, op: OpInfo) -> fx.Node:
        alpha = self.const(op.inputs[1]).astype(np.float32)
        if self.rank(op.inputs[0]) != 4 or alpha.size != self.ir.tensors[op.inputs[0]].shape[3]:
            raise self.fail(op, f"alpha shape {alpha.shape}")
        return self.g.call_function(F.prelu, (self.env[op.inputs[0]], self.buffer(alpha.ravel(), "alpha")))

    def emit(self, op: OpInfo) -> fx.Node:
        n = op.name
        x = op.inputs[0]
        unary: dict[str, Callable[..., Any]] = {
            "RELU": F.relu, "RELU6": F.relu6, "LOGISTIC": torch.sigmoid, "HARD_SWISH": F.hardswish, "TANH": torch.tanh,
        }
        if n in unary:
            return self.g.call_function(unary[n], (self.env[x],))
        if n in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            return self.conv(op, depthwise=n == "DEPTHWISE_CONV_2D")
        if n == "CUSTOM:Convolution2DTransposeBias":
            return self.transpose_conv_bias(op)
        if n in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            return self.pool(op, "max" if n == "MAX_POOL_2D" else "avg")
        if n in ("ADD", "MUL", "SUB"):
            return self.binary(op, {"ADD": operator.add, "MUL": operator.mul, "SUB": operator.sub}[n])
        if n == "PAD":
            return self.pad(op)
        if n == "RESHAPE":
            return self.reshape(op)
        if n == "CONCATENATION":
            return self.concat(op)
        if n == "RESIZE_BILINEAR":
            return self.resize(op)
        if n == "DEPTH_TO_SPACE":
            return self.depth_to_space(op)
        if n == "PRELU":
            return self.prelu(op)
        if n == "DEQUANTIZE":
            return self.g.call_method("float", (self.env[x],))
        raise self.fail(op, "no converter")

    def build(self) -> fx.GraphModule:
        for k, i in enumerate(self.ir.inputs):
            node = self.g.placeholder(f"input_{k}")
            if self.rank(i) == 4 and self.layout == "nhwc":
                node = self.g.call_function(torch.permute, (node, (0, 3, 1, 2)))
            self.env[i] = node
        for op in self.ir.ops:
            self.env[op.outputs[0]] = self.emit(op)
        outs = []
        for i in self.ir.outputs:
            node = self.env[i]
            if self.rank(i) == 4 and self.layout == "nhwc":
                node = self.g.call_function(torch.permute, (node, (0, 2, 3, 1)))
            outs.append(node)
        self.g.output(tuple(outs))
        self.g.eliminate_dead_code()  # drops PAD nodes folded into convolutions
        gm = fx.GraphModule(self.root, self.g, class_name="TFLiteGraph")
        return gm


SUPPORTED_OPS = (
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "CUSTOM:Convolution2DTransposeBias", "DENSIFY",
    "DEPTHWISE_CONV_2D", "DEPTH_TO_SPACE", "DEQUANTIZE", "HARD_SWISH", "LOGISTIC", "MAX_POOL_2D", "MUL", "PAD",
    "PRELU", "RELU", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "SUB", "TANH",
)


def build_module(ir: ModelIR, layout: str = "nhwc") -> fx.GraphModule:
    """Build the fx module of ``ir``; ``layout`` is the layout of rank-4 inputs and outputs (nhwc|nchw)."""
    return _Builder(ir, layout).build()
