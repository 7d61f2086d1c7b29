"""CPU lowering of a compiled graph on the backend: oneDNN fused convolutions with pre-packed weights.

What a CUDA driver's JIT does for its GPU, this does for a CPU backend: a registered graph of plain aten
ops runs its convolutions 1.5-2.6x faster (tflite pose models, 2-core VM) when each
``convolution [-> add(other)] [-> relu]`` or ``convolution -> relu | hardtanh(0, 6)`` chain becomes one
``mkldnn._convolution_pointwise`` call whose weight is re-ordered into oneDNN's blocked layout once per
input size (otherwise oneDNN reorders it on every call). Its outputs are channels-last; every other op
computes the same values on them, and the graph's views become reshapes (a view of a channels-last tensor
may need a copy).

These are the fusion rules of node1.tflite.cpu (the local CPU path), so a graph lowered here gives the same
numbers as the same model lowered there (tests/pose/test_remote.py checks bit-equality). The results differ
from the unlowered graph by float rounding only; a client that needs the unlowered arithmetic registers its
module with ``gvirtus_exact = True`` (graph option "exact"), and ``lower_exact`` lowers that graph by
gvirtus.exactconv's rules instead (aten's own kernels on blocked activations: bit-identical, and faster
than unlowered; node1.tflite.cpu.lower_exact is the same pass on fx graphs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch

from gvirtus import codec, exactconv

_CONV = torch.ops.aten.convolution.default
_ADD = torch.ops.aten.add.Tensor
_RELU = torch.ops.aten.relu.default
_HARDTANH = torch.ops.aten.hardtanh.default
_POINTWISE = torch.ops.mkldnn._convolution_pointwise
# oneDNN returns channels-last tensors; a graph traced on contiguous ones may view them (flatten): reshape
# gives the same values and copies only when the strides require it
_VIEWS = {torch.ops.aten.view.default: torch.ops.aten.reshape.default,
          torch.ops.aten._unsafe_view.default: torch.ops.aten.reshape.default}


def available(device: torch.device, exact: bool = False) -> bool:
    """Lowering applies to CPU backends with oneDNN (``exact``: and aten's backend choice inspectable)."""
    return device.type == "cpu" and (exactconv.available() if exact else torch.backends.mkldnn.is_available())


def leave(value: Any) -> Any:
    """A lowered graph's output as the graph was traced to return it: dense and contiguous."""
    return exactconv.dense(value).contiguous() if isinstance(value, torch.Tensor) else value


def _users(ops: list[Any], calls: list[tuple[list[Any], dict[str, Any]]], outputs: Any) -> dict[int, list[int]]:
    """node -> the nodes using it (an output use counts as user -1)."""
    users: dict[int, list[int]] = {}
    for j, call in [*enumerate(calls), (-1, outputs)]:
        for i in set(codec.node_refs(list(call) if j >= 0 else call)):   # each user once, as fx counts them
            users.setdefault(i, []).append(j)
    return users


def _unary(op: Any, args: list[Any]) -> tuple[str, list[float]] | None:
    if op is _RELU:
        return "relu", []
    if op is _HARDTANH and [float(a) for a in args[1:3]] == [0.0, 6.0]:
        return "hardtanh", [0.0, 6.0]
    return None


class _Packed:
    """A conv weight in oneDNN's blocked layout, packed on first use for the input size it sees."""

    def __init__(self, padding: list[int], stride: list[int], dilation: list[int], groups: int) -> None:
        self.conv = (padding, stride, dilation, groups)
        self._lock = threading.Lock()
        self._by_size: dict[tuple[int, ...], torch.Tensor] = {}

    def get(self, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The packed weight for input ``x``, which must be a 4-d float32 tensor."""
        if x.dtype != torch.float32 or x.dim() != 4:
            raise RuntimeError(f"lowered convolution expects a 4-d float32 input, got {x.dtype} {tuple(x.shape)}")
        size = tuple(x.shape)
        packed = self._by_size.get(size)
        if packed is None:
            with self._lock:
                padding, stride, dilation, groups = self.conv
                packed = torch._C._nn.mkldnn_reorder_conv2d_weight(  # type: ignore[call-arg]  # stub lacks input_size
                    weight.to_mkldnn(), padding, stride, dilation, groups, list(size))
                self._by_size[size] = packed
        return packed


def _fused_call(packed: _Packed, binary: bool, unary: str, scalars: list[float]) -> Callable[..., torch.Tensor]:
    padding, stride, dilation, groups = packed.conv

    def conv_unary(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return _POINTWISE.default(x, packed.get(w, x), b, padding, stride, dilation, groups, unary, scalars, "")

    def conv_binary(x: torch.Tensor, other: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        return _POINTWISE.binary(x, other, packed.get(w, x), b, padding, stride, dilation, groups, "add", None,
                                 None if unary == "none" else unary, scalars, "")

    return conv_binary if binary else conv_unary


def _noop() -> None:
    return None


def lower_convolutions(ops: list[Any], calls: list[tuple[list[Any], dict[str, Any]]], outputs: Any,
                       weights: list[torch.Tensor]) -> int:
    """Rewrite ``ops`` / ``calls`` in place (see the module docstring); returns how many chains were fused.

    A chain qualifies when its convolution is 2-d, not transposed, with a constant float32 weight of rank 4,
    and each link is the only user of the one before. The binary (add) form needs the other operand to have
    the convolution's output shape: that is known only at run time, so its call checks and otherwise falls
    back to convolution + add (+ relu) unfused.
    """
    users = _users(ops, calls, outputs)
    fused = 0
    for j, op in enumerate(ops):
        if op is not _CONV or calls[j][1]:
            continue
        x, w, b, stride, padding, dilation, transposed, _out_pad, groups = calls[j][0]
        if transposed or not (isinstance(w, codec.Ref) and w.kind == "w"):
            continue
        weight = weights[w.index]
        if weight.dim() != 4 or weight.dtype != torch.float32 or len(stride) != 2:
            continue
        packed = _Packed(list(padding), list(stride), list(dilation), int(groups))
        only = users.get(j, [])
        user = only[0] if len(only) == 1 and only[0] >= 0 else None
        if user is not None and ops[user] is _ADD and not calls[user][1] and len(calls[user][0]) == 2:
            a0, a1 = calls[user][0]
            other = a1 if isinstance(a0, codec.Ref) and a0.kind == "n" and a0.index == j else a0
            if isinstance(other, codec.Ref) and not (other.kind == "n" and other.index == j):
                tail, unary = user, "none"
                after = users.get(user, [])
                if len(after) == 1 and after[0] >= 0 and ops[after[0]] is _RELU:
                    tail, unary = after[0], "relu"   # oneDNN's binary fusion takes relu only
                _replace(ops, calls, conv=j, add=user, tail=tail, fn=_fused_call(packed, True, unary, []),
                         args=[x, other, w, b], fallback=(calls[j][0], calls[user][0], unary))
                fused += 1
                continue
        tail, unary = j, "none"
        scalars: list[float] = []
        if user is not None and not calls[user][1]:
            found = _unary(ops[user], calls[user][0])
            if found is not None:
                tail, (unary, scalars) = user, found
        _replace(ops, calls, conv=j, add=None, tail=tail, fn=_fused_call(packed, False, unary, scalars),
                 args=[x, w, b])
        fused += 1
    if fused:
        for j, op in enumerate(ops):
            ops[j] = _VIEWS.get(op, op)
    return fused


def _replace(ops: list[Any], calls: list[tuple[list[Any], dict[str, Any]]], *, conv: int, add: int | None,
             tail: int, fn: Callable[..., torch.Tensor], args: list[Any],
             fallback: tuple[list[Any], list[Any], str] | None = None) -> None:
    """Make node ``tail`` compute the chain with ``fn(*args)``; the chain's other nodes become no-ops."""
    if fallback is not None:  # binary: shapes are checked at run time
        conv_args, add_args, unary = fallback
        x_ref, other_ref = args[0], args[1]
        conv_first = isinstance(add_args[0], codec.Ref) and add_args[0].kind == "n" and add_args[0].index == conv

        def binary_or_fallback(x: torch.Tensor, other: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
                               *rest: Any) -> torch.Tensor:
            y_shape = _conv_out_shape(x, w, conv_args)
            if tuple(other.shape) == y_shape and other.dtype == torch.float32:
                return fn(x, other, w, b)
            y = _CONV(x, w, b, *rest)
            y = _ADD(y, other) if conv_first else _ADD(other, y)
            return _RELU(y) if unary == "relu" else y

        ops[tail] = binary_or_fallback
        calls[tail] = ([x_ref, other_ref, args[2], args[3], *conv_args[3:]], {})
    else:
        ops[tail] = fn
        calls[tail] = (args, {})
    for k in (conv, add):
        if k is not None and k != tail:
            ops[k], calls[k] = _noop, ([], {})


def _conv_out_shape(x: torch.Tensor, w: torch.Tensor, conv_args: list[Any]) -> tuple[int, ...]:
    _, _, _, stride, padding, dilation, _, _, _ = conv_args
    out = [int(x.shape[0]), int(w.shape[0])]
    for d in range(2):
        k = (int(w.shape[2 + d]) - 1) * int(dilation[d]) + 1
        out.append((int(x.shape[2 + d]) + 2 * int(padding[d]) - k) // int(stride[d]) + 1)
    return tuple(out)


def _refs_to(value: Any, nodes: set[int]) -> bool:
    return any(i in nodes for i in codec.node_refs(value))


def _densifying(op: Any) -> Callable[..., Any]:
    """``op`` with every blocked tensor among its arguments (also inside lists) made dense first."""
    def dense_tree(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return type(v)(dense_tree(x) for x in v)
        return exactconv.dense(v)

    def call(*args: Any, **kwargs: Any) -> Any:
        return op(*dense_tree(args), **{k: dense_tree(v) for k, v in kwargs.items()})

    return call


def lower_exact(ops: list[Any], calls: list[tuple[list[Any], dict[str, Any]]], outputs: Any,
                weights: list[torch.Tensor]) -> int:
    """Rewrite ``ops`` / ``calls`` in place by gvirtus.exactconv (bit-identical to the unlowered graph):
    each qualifying ``convolution [-> relu | hardtanh(0, 6)]`` becomes an ExactConv, an add of two of their
    results an exact_add, and every other op reading one of them densifies its arguments first (the
    outputs go through ``leave``). Returns how many convolutions were rewritten."""
    users = _users(ops, calls, outputs)
    convs: dict[int, exactconv.ExactConv] = {}   # tail node -> its ExactConv
    blocked: set[int] = set()                     # nodes whose value may be blocked
    adds: set[int] = set()
    done: set[int] = set()
    for j, op in enumerate(ops):
        if j in done:
            continue
        args, kwargs = calls[j]
        if op is _CONV and not kwargs:
            x, w, b, stride, padding, dilation, transposed, _out_pad, groups = args
            if not transposed and isinstance(w, codec.Ref) and w.kind == "w" and len(stride) == 2 \
                    and weights[w.index].dim() == 4 and weights[w.index].dtype == torch.float32:
                only = users.get(j, [])
                user = only[0] if len(only) == 1 and only[0] >= 0 else None
                tail, unary = j, "none"
                if user is not None and not calls[user][1] and (found := _unary(ops[user], calls[user][0])):
                    tail, unary = user, found[0]
                conv = exactconv.ExactConv(list(stride), list(padding), list(dilation), int(groups),
                                           weight_shape=tuple(weights[w.index].shape), has_bias=b is not None,
                                           unary=unary)
                _replace(ops, calls, conv=j, add=None, tail=tail, fn=conv, args=[x, w, b])
                convs[tail] = conv
                blocked.add(tail)
                done.add(tail)
                continue
        if op is _ADD and not kwargs and len(args) == 2 and all(
                isinstance(a, codec.Ref) and a.kind == "n" and a.index in blocked for a in args):
            ops[j] = exactconv.exact_add
            blocked.add(j)
            adds.add(j)
            continue
        if _refs_to([args, kwargs], blocked):
            ops[j] = _densifying(op)
    for tail, conv in convs.items():
        conv.consumers = _readers(tail, calls, users, convs, adds)
    return len(convs)


def _readers(node: int, calls: list[tuple[list[Any], dict[str, Any]]], users: dict[int, list[int]],
             convs: dict[int, exactconv.ExactConv], adds: set[int]) -> list[exactconv.ExactConv]:
    """The ExactConvs reading ``node``'s value as their input, directly or through exact adds."""
    readers: list[exactconv.ExactConv] = []
    for u in users.get(node, []):
        if u in convs:
            x = calls[u][0][0]
            if isinstance(x, codec.Ref) and x.kind == "n" and x.index == node:
                readers.append(convs[u])
        elif u in adds:
            readers.extend(_readers(u, calls, users, convs, adds))
    return readers
