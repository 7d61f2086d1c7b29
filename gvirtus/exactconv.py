"""Exact oneDNN convolutions on the CPU: aten's own arithmetic, without its per-call layout round trips.

For a float32 NCHW input, aten's CPU convolution picks a backend per call from the shapes and the thread
count (``torch._C._select_conv_backend``): oneDNN for most convolutions, its own im2col + GEMM ("Slow2d")
for small 1x1 ones. When it picks oneDNN it re-orders the input into oneDNN's blocked layout (nChw16c),
convolves, and re-orders the result back to NCHW, on every call. Between two convolutions that round
trip is pure overhead: 3.5 of the 7.8 ms oneDNN spends in one pose detector call on the 2-core VM.

``ExactConv`` makes the same choice and, where aten would use oneDNN, calls the same oneDNN kernel on
an input kept in the blocked layout (an opaque ``torch._mkldnn`` tensor), fusing a following relu /
relu6 as the kernel's post-op (a clamp gives the same float either way). ``exact_add`` adds two blocked
tensors in place of a dense add, ``dense`` brings a blocked tensor back for every other op. The results
are bit-identical to the unlowered module at the same thread count (tests/gvirtus/test_exactconv.py),
unlike gvirtus.lowering's pre-packed channels-last kernels, which round differently. Which kernel the
fused call picks is the torch build's choice, so each plan is checked against aten's ops on its first
input and falls back to them where they differ (torch 2.11 on a Xeon: every plan; 2.13.0: none).

Where aten runs a small 1x1 convolution on its own GEMM and the input is blocked, the call may instead
take oneDNN's channels-last 1x1 kernel with the weight pre-packed, which sums in the same order (with
torch 2.13.0 on the 2-core VM: the detector's 7 such calls, ~2x faster); that plan too is kept only if
its first result is aten's, bit for bit, and it returns NCHW.

Used by node1.tflite.cpu.lower_exact (the local CPU path) and gvirtus.lowering.lower_exact (a CPU
backend), for models whose every bit matters (the pose detector, docs/pose.md "Sensitivity").
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger("gvirtus.exactconv")

_POINTWISE = torch.ops.mkldnn._convolution_pointwise
_UNARY_DENSE = {"none": lambda y: y, "relu": torch.relu, "hardtanh": lambda y: F.hardtanh(y, 0.0, 6.0)}
UNARIES = tuple(_UNARY_DENSE)  # "hardtanh" means relu6: hardtanh(0, 6)
_ATEN, _ONEDNN, _ONEDNN_FROM_DENSE, _NHWC = 0, 1, 2, 3  # how a call runs (per input shape, layout, threads)


def available() -> bool:
    """Whether this torch can run the exact path (oneDNN present, aten's backend choice inspectable)."""
    return torch.backends.mkldnn.is_available() and hasattr(torch._C, "_select_conv_backend")


def dense(t: Any) -> Any:
    """``t`` as an ordinary strided tensor (a blocked oneDNN tensor is re-ordered to NCHW; others pass)."""
    return t.to_dense() if isinstance(t, torch.Tensor) and t.is_mkldnn else t


def exact_add(a: Any, b: Any) -> Any:
    """``a + b``, kept blocked when both are blocked tensors of one shape (the same float32 sums)."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.is_mkldnn and b.is_mkldnn \
            and a.shape == b.shape:
        return torch.add(a, b)
    return dense(a) + dense(b)


class ExactConv:
    """A 2-d convolution (+ "relu" | "hardtanh" (relu6)) computed as aten computes it, on either layout.

    Built with the convolution's parameters and its weight's shape; called with ``(x, w, b)``: x a float32
    (N, C, H, W) tensor, dense or blocked; w the dense float32 (O, C/groups, kH, kW) weight; b a (O,) bias
    or None. Where aten would use oneDNN the result is blocked if the input was, or if one of
    ``consumers`` (the convolutions that read this result, directly or through an add; set by the
    lowering) will also use oneDNN; otherwise the call is the portable ops themselves (aten's
    convolution, then the activation) and returns a dense NCHW tensor. Moving a dense input into the
    blocked layout costs a copy, so a chain starts only where a next oneDNN convolution reads it.
    The plan is cached per (input shape, dtype, layout, thread count); the first call of each plan also
    runs the portable ops and keeps the fused call only if the two agree bit for bit (with torch 2.13.0,
    the project's pin, they do; torch 2.11's fused call picks channels-last kernels that round
    differently, and then every call runs the portable ops). Thread-safe.
    """

    __name__ = "exact_conv"  # an instance is an fx call_function target: fx codegen names it by this

    def __init__(self, stride: list[int], padding: list[int], dilation: list[int], groups: int, *,
                 weight_shape: tuple[int, ...], has_bias: bool, unary: str = "none") -> None:
        if unary not in _UNARY_DENSE:
            raise ValueError(f"unary must be one of {UNARIES}, got {unary!r}")
        if len(weight_shape) != 4:
            raise ValueError(f"ExactConv takes a 4-d (O, C/groups, kH, kW) weight, got shape {weight_shape}")
        self.stride, self.padding, self.dilation = list(stride), list(padding), list(dilation)
        self.groups, self.unary = int(groups), unary
        self.weight_shape, self.has_bias = tuple(int(d) for d in weight_shape), has_bias
        self.consumers: list[ExactConv] = []
        self._scalars = [0.0, 6.0] if unary == "hardtanh" else []
        self._onednn: dict[tuple[Any, ...], bool] = {}
        self._plans: dict[tuple[Any, ...], int] = {}
        self._packed: dict[tuple[Any, ...], tuple[Any, torch.Tensor]] = {}  # key -> (weight identity, packed weight)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"ExactConv(weight={self.weight_shape}, stride={self.stride}, padding={self.padding}, "
                f"groups={self.groups}, {self.unary})")

    def uses_onednn(self, shape: tuple[int, ...]) -> bool:
        """Whether aten picks oneDNN for a float32 input of ``shape`` at the current thread count."""
        key = (tuple(shape), torch.get_num_threads())
        hit = self._onednn.get(key)
        if hit is None:
            backend = torch._C._select_conv_backend(  # decides on shapes only: probes hold no data
                torch.empty(key[0]), torch.empty(self.weight_shape),
                torch.empty(self.weight_shape[0]) if self.has_bias else None,
                self.stride, self.padding, self.dilation, False, [0, 0], self.groups, None)
            hit = len(key[0]) == 4 and str(backend).endswith(".Mkldnn")
            with self._lock:
                self._onednn[key] = hit
        return hit

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The (N, O, Ho, Wo) result shape for an input of ``shape``."""
        out = [int(shape[0]), self.weight_shape[0]]
        for d in range(2):
            k = (self.weight_shape[2 + d] - 1) * self.dilation[d] + 1
            out.append((int(shape[2 + d]) + 2 * self.padding[d] - k) // self.stride[d] + 1)
        return tuple(out)

    def _plan(self, key: tuple[Any, ...]) -> int:
        shape, dtype, blocked, _threads = key
        if dtype != torch.float32:
            return _ATEN
        if not self.uses_onednn(tuple(shape)):
            # aten's own GEMM (a small 1x1): oneDNN's channels-last kernel gives the same sums (checked on the first
            # call) in ~half the time; worth its layout copies when the input is blocked (aten would copy it too)
            return _NHWC if blocked and self.groups == 1 and self.weight_shape[2:] == (1, 1) else _ATEN
        if blocked:
            return _ONEDNN
        if any(c.uses_onednn(self.out_shape(tuple(shape))) for c in self.consumers):
            return _ONEDNN_FROM_DENSE
        return _ATEN  # nothing would read a blocked result: exactly the portable ops (the fused call is no faster)

    def _portable(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        y = F.conv2d(dense(x), w, b, self.stride, self.padding, self.dilation, self.groups)
        return _UNARY_DENSE[self.unary](y)

    def _nhwc(self, key: tuple[Any, ...], x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        """The fused call on a channels-last copy of ``x`` with the weight pre-packed for it; an NCHW result
        (a channels-last one would make aten pick other kernels for the ops after it)."""
        wid = (w.data_ptr(), tuple(w.shape))  # weights are constants (fx attributes, read-only backend weights)
        hit = self._packed.get(key)
        if hit is None or hit[0] != wid:
            packed = torch._C._nn.mkldnn_reorder_conv2d_weight(  # type: ignore[call-arg]  # stub lacks input_size
                w.to_mkldnn(), self.padding, self.stride, self.dilation, self.groups, list(key[0]))
            with self._lock:
                self._packed[key] = hit = (wid, packed)
        xd = dense(x).contiguous(memory_format=torch.channels_last)
        return _POINTWISE.default(xd, hit[1], b, self.padding, self.stride, self.dilation, self.groups,
                                  self.unary, self._scalars, "").contiguous()

    def _fused(self, plan: int, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        if plan == _ONEDNN_FROM_DENSE:
            x = x.contiguous().to_mkldnn()
        return _POINTWISE.default(x, w, b, self.padding, self.stride, self.dilation, self.groups,
                                  self.unary, self._scalars, "")

    def _first_call(self, key: tuple[Any, ...], x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None
                    ) -> torch.Tensor:
        """Choose the plan for ``key`` and check it: a fused plan is kept only if its result on this input is
        bit-identical to the portable ops' (torch builds differ in which kernel the fused call picks)."""
        plan = self._plan(key)
        out = self._run(plan, key, x, w, b)
        if plan != _ATEN:
            want = self._portable(x, w, b)
            if not torch.equal(dense(out), want):
                log.info("%r: this torch's fused oneDNN call rounds differently for input %s; using aten's ops",
                         self, tuple(key[0]))
                plan, out = _ATEN, want
        with self._lock:
            self._plans[key] = plan
        return out

    def fused(self) -> int:
        """How many (shape, layout, threads) plans use the fused oneDNN call (checked bit-identical)."""
        return sum(plan != _ATEN for plan in self._plans.values())

    def __call__(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        key = (x.shape, x.dtype, x.is_mkldnn, torch.get_num_threads())
        plan = self._plans.get(key)
        if plan is None:
            return self._first_call(key, x, w, b)
        return self._run(plan, key, x, w, b)

    def _run(self, plan: int, key: tuple[Any, ...], x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None
             ) -> torch.Tensor:
        if plan == _ATEN:
            return self._portable(x, w, b)
        if plan == _NHWC:
            return self._nhwc(key, x, w, b)
        return self._fused(plan, x, w, b)
