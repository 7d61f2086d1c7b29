"""A CPU-only lowering of a loaded model: oneDNN fused convolutions with pre-packed weights.

The portable module (node1.tflite.load_tflite) uses only standard aten ops, so it runs on any device and
traces for gvirtus. On the CPU it is 1.5-2.6x slower than this lowering (docs/pose.md): aten re-orders
every convolution weight into oneDNN's blocked layout on every call, and each activation and residual ADD
is a separate pass over memory. This pass rewrites the fx graph:

- conv -> relu / relu6            => mkldnn._convolution_pointwise(attr="relu" | "hardtanh" [0, 6])
- conv -> add(other) [-> relu]    => mkldnn._convolution_pointwise.binary("add", relu)
- convolution weights pre-packed once into oneDNN's blocked layout for the input size they will see.

The input stays NCHW; oneDNN's fused calls return channels-last activations on their own. The same rules,
on aten graphs, are gvirtus.lowering's: a gvirtus CPU backend gives the same numbers as this module.

The result is checked against the portable module on an example input before it is returned;
if oneDNN is not available or the check fails, the portable module is returned unchanged.

``optimize_exact_for_cpu`` is the bit-exact variant (gvirtus.exactconv): aten's own kernels, with the
activations kept in oneDNN's blocked layout between convolutions and relu/relu6 fused. Inside the pose
step the detector takes 0.88x the portable one's time at 2 threads (bench/detector_bench.py; no gain at
1 thread), and equals it bit for bit (checked on the example, else the portable module is returned);
gvirtus.lowering applies the same rules to graphs registered "exact".
"""

from __future__ import annotations

import copy
import logging
import operator
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx
from torch.fx.passes.shape_prop import ShapeProp

from gvirtus import exactconv

log = logging.getLogger("node1.tflite.cpu")

CHECK_REL_TOL = 1e-2  # of each output's range: catches a broken rewrite; tests/tflite holds the 1e-4 LiteRT parity
# (pose_landmark_full's segmentation logits alone move by ~1e-3 of their range under any change of fp32 order)
_UNARY: dict[Any, tuple[str, list[float]]] = {F.relu: ("relu", []), F.relu6: ("hardtanh", [0.0, 6.0])}


def _only_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _unary_of(node: fx.Node) -> tuple[fx.Node, str | None, list[float]]:
    """(last node of the chain, unary attr, scalars) when ``node``'s only user is a fusable activation."""
    user = _only_user(node)
    if user is not None and user.op == "call_function" and user.target in _UNARY:
        attr, scalars = _UNARY[user.target]
        return user, attr, scalars
    return node, None, []


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = getattr(node, "meta", {}).get("tensor_meta")
    return tuple(meta.shape) if meta is not None else None


def fuse_convolutions(gm: fx.GraphModule, example: torch.Tensor) -> int:
    """Rewrite conv(+add)(+activation) chains into oneDNN fused ops in place; returns how many were fused."""
    ShapeProp(gm).propagate(example)
    g = gm.graph
    pointwise = torch.ops.mkldnn._convolution_pointwise
    fused = 0
    for node in list(g.nodes):
        if node.op != "call_function" or node.target is not F.conv2d:
            continue
        x, w, b, stride, padding, dilation, groups = node.args
        conv_args = [list(padding), list(stride), list(dilation), groups]
        user = _only_user(node)
        if user is not None and user.target is operator.add:
            other = user.args[1] if user.args[0] is node else user.args[0]
            if other is not node and isinstance(other, fx.Node) and _shape(other) == _shape(node):
                tail, unary, scalars = _unary_of(user)
                if unary not in (None, "relu"):  # oneDNN's binary fusion only takes relu as a post-op
                    tail, unary, scalars = user, None, []
                with g.inserting_after(tail):
                    new = g.call_function(pointwise.binary, (x, other, w, b, *conv_args, "add", None, unary,
                                                             scalars, ""))
                tail.replace_all_uses_with(new)
                fused += 1
                continue
        tail, unary, scalars = _unary_of(node)
        with g.inserting_after(tail):
            new = g.call_function(pointwise.default, (x, w, b, *conv_args, unary or "none", scalars, ""))
        tail.replace_all_uses_with(new)
        fused += 1
    g.eliminate_dead_code()
    gm.recompile()
    return fused


def prepack_weights(gm: fx.GraphModule) -> int:
    """Replace the weights of fused oneDNN convolutions by pre-packed oneDNN tensors (needs shape metadata)."""
    pointwise = torch.ops.mkldnn._convolution_pointwise
    packed = 0
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target not in (pointwise.default, pointwise.binary):
            continue
        w_pos = 1 if node.target is pointwise.default else 2
        x, w_node = node.args[0], node.args[w_pos]
        in_shape = _shape(x)
        if w_node.op != "get_attr" or in_shape is None:
            continue
        padding, stride, dilation, groups = node.args[w_pos + 2:w_pos + 6]
        weight = getattr(gm, w_node.target)
        if len(w_node.users) != 1:
            continue
        packed_w = torch._C._nn.mkldnn_reorder_conv2d_weight(  # type: ignore[call-arg]  # stub lacks input_size
            weight.to_mkldnn(), padding, stride, dilation, groups,
                                                             list(in_shape))
        delattr(gm, w_node.target)
        object.__setattr__(gm, w_node.target, packed_w)  # an opaque oneDNN tensor: not a buffer
        packed += 1
    return packed


def _max_rel_err(a: Any, b: Any) -> float:
    errs = []
    for x, y in zip(a, b, strict=True):
        span = float(y.max() - y.min()) or 1.0
        errs.append(float((x - y).abs().max()) / span)
    return max(errs)


def optimize_for_cpu(module: fx.GraphModule, example: torch.Tensor) -> torch.nn.Module:
    """The CPU-fast version of a loaded model (layout "nchw" expected for the input), or ``module`` itself
    when oneDNN is unavailable or the fused module does not match it on ``example``."""
    if not torch.backends.mkldnn.is_available():
        return module
    try:
        gm = copy.deepcopy(module)
        n = fuse_convolutions(gm, example)
        ShapeProp(gm).propagate(example)
        prepack_weights(gm)
        fast = gm.eval()
        with torch.inference_mode():
            err = _max_rel_err(fast(example), module(example))
    except RuntimeError as exc:  # an op oneDNN refuses on this machine: keep the portable module
        log.warning("CPU fusion of %s failed (%s); using the portable module", getattr(module, "model_name", "?"), exc)
        return module
    if err > CHECK_REL_TOL:
        log.warning("CPU-fused %s differs by %.2g of range; using the portable module",
                    getattr(module, "model_name", "?"), err)
        return module
    log.debug("CPU-fused %d convolutions (max rel err %.2g)", n, err)
    return fast


def lower_exact(gm: fx.GraphModule) -> int:
    """Rewrite every conv2d [-> relu | relu6] into gvirtus.exactconv in place, adds of two rewritten
    results into exact_add, and put ``dense`` before every other use of them; returns how many convs."""
    g = gm.graph
    blocked: dict[fx.Node, exactconv.ExactConv | None] = {}  # node -> its ExactConv (None: an exact_add)
    dense_of: dict[fx.Node, fx.Node] = {}
    n = 0
    for node in list(g.nodes):
        if node.op == "call_function" and node.target is F.conv2d and len(node.args) == 7 and not node.kwargs \
                and isinstance(node.args[1], fx.Node) and node.args[1].op == "get_attr":
            x, w, b, stride, padding, dilation, groups = node.args
            tail, unary, _ = _unary_of(node)
            conv = exactconv.ExactConv(list(stride), list(padding), list(dilation), groups,
                                       weight_shape=tuple(getattr(gm, w.target).shape), has_bias=b is not None,
                                       unary=unary or "none")
            with g.inserting_after(tail):  # the instance itself is the target (no nn.Module call overhead)
                new = g.call_function(conv, (x, w, b))
            tail.replace_all_uses_with(new)
            blocked[new] = conv
            n += 1
            continue
        if node.op == "call_function" and node.target is operator.add and not node.kwargs \
                and all(isinstance(a, fx.Node) and a in blocked for a in node.args):
            with g.inserting_after(node):
                new = g.call_function(exactconv.exact_add, tuple(node.args))
            node.replace_all_uses_with(new)
            blocked[new] = None
            continue
        if node.op in ("call_function", "call_method", "call_module", "output") and node not in blocked:
            def densified(a: fx.Node) -> fx.Node:
                if a not in blocked:
                    return a
                if a not in dense_of:
                    with g.inserting_after(a):
                        dense_of[a] = g.call_function(exactconv.dense, (a,))
                return dense_of[a]
            node.args = fx.node.map_arg(node.args, densified)
            node.kwargs = fx.node.map_arg(node.kwargs, densified)
    for node, made in blocked.items():  # who reads each result as a convolution input (through adds)
        if made is not None:
            made.consumers = _conv_readers(node, blocked)
    g.eliminate_dead_code()
    gm.recompile()
    return n


def _conv_readers(node: fx.Node, blocked: dict[fx.Node, exactconv.ExactConv | None]) -> list[exactconv.ExactConv]:
    readers: list[exactconv.ExactConv] = []
    for user in node.users:
        conv = blocked.get(user)
        if conv is not None and user.args[0] is node:
            readers.append(conv)
        elif user in blocked and conv is None:  # an exact_add: its result goes on
            readers.extend(_conv_readers(user, blocked))
    return readers


def optimize_exact_for_cpu(module: fx.GraphModule, example: torch.Tensor) -> torch.nn.Module:
    """``module`` with gvirtus.exactconv's convolutions: bit-identical to it (checked on ``example``, else
    ``module`` itself is returned), faster on the CPU. Meant for models whose every bit matters."""
    if not exactconv.available():
        return module
    try:
        gm = copy.deepcopy(module)
        n = lower_exact(gm)
        exact = gm.eval()
        with torch.inference_mode():
            same = all(torch.equal(a, b) for a, b in zip(exact(example), module(example), strict=True))
    except RuntimeError as exc:
        log.warning("exact CPU lowering of %s failed (%s); using the portable module",
                    getattr(module, "model_name", "?"), exc)
        return module
    if not same:
        log.warning("exact CPU lowering of %s is not bit-identical; using the portable module",
                    getattr(module, "model_name", "?"))
        return module
    log.debug("exact CPU lowering: %d convolutions", n)
    return exact
