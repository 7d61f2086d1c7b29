"""gvirtus.exactconv and the exact lowerings built on it: the same bits as aten, at 1 and 2 threads.

aten picks its convolution kernel by shape and thread count, so each check runs at both counts (the
2-core VM's default is 2; the test backends run 1). The pose detector is the model that needs it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gvirtus import exactconv
from gvirtus.graph import COMPUTE, CompiledGraph, capture
from node1.pose.runners import stage_module
from node1.tflite import load_model
from node1.tflite.cpu import optimize_exact_for_cpu

pytestmark = pytest.mark.skipif(not exactconv.available(), reason="this torch build has no oneDNN")


def _fused_call_matches_aten() -> bool:
    """Whether this torch build + CPU give aten's bits from the fused oneDNN call on a blocked input (a
    depthwise 3x3 probe). Yes with the pinned torch 2.13.0 on the 2-core VM; no with torch 2.11 on the H100
    box's Xeon, where ExactConv falls back to aten's ops and only the bit-identity can be checked."""
    g = torch.Generator().manual_seed(9)
    x, w, b = torch.randn(1, 32, 24, 24, generator=g), torch.randn(32, 1, 3, 3, generator=g), torch.randn(32)
    fused = torch.ops.mkldnn._convolution_pointwise(x.to_mkldnn(), w, b, [1, 1], [1, 1], [1, 1], 32, "none",
                                                    [], "")
    return torch.equal(fused.to_dense(), F.conv2d(x, w, b, 1, 1, 1, 32))


FUSED_EXACT_HERE = exactconv.available() and _fused_call_matches_aten()

# (input shape, weight shape, stride, padding, groups): the pose detector's kinds of convolution
CASES = [((1, 3, 64, 64), (24, 3, 3, 3), 2, 1, 1),        # first layer, dense 3x3
         ((1, 48, 40, 40), (48, 1, 3, 3), 1, 1, 48),      # depthwise 3x3
         ((1, 48, 40, 40), (48, 1, 5, 5), 2, 2, 48),      # depthwise 5x5, strided
         ((1, 64, 40, 40), (24, 64, 1, 1), 1, 0, 1),      # 1x1, large (oneDNN at 2 threads)
         ((1, 80, 14, 14), (96, 80, 1, 1), 1, 0, 1)]      # 1x1, small (aten's own GEMM)
UNARY = {"none": lambda y: y, "relu": F.relu, "hardtanh": F.relu6}


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):  # type: ignore[no-untyped-def]
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("unary", list(UNARY))
def test_exact_conv_gives_atens_bits_from_either_layout(threads: int, unary: str) -> None:
    g = torch.Generator().manual_seed(0)
    for x_shape, w_shape, stride, pad, groups in CASES:
        x, w, b = torch.randn(x_shape, generator=g), torch.randn(w_shape, generator=g), torch.randn(w_shape[0])
        want = UNARY[unary](F.conv2d(x, w, b, stride, pad, 1, groups))
        conv = exactconv.ExactConv([stride] * 2, [pad] * 2, [1, 1], groups, weight_shape=w_shape, has_bias=True,
                                   unary=unary)
        reader = exactconv.ExactConv([1, 1], [1, 1], [1, 1], w_shape[0], weight_shape=(w_shape[0], 1, 3, 3),
                                     has_bias=True)
        assert reader.uses_onednn(conv.out_shape(x_shape))  # aten runs depthwise 3x3 on oneDNN at any count
        conv.consumers = [reader]  # so a dense input turns blocked where this conv runs on oneDNN
        with torch.inference_mode():
            from_dense, from_blocked = conv(x, w, b), conv(x.to_mkldnn(), w, b)
        assert conv.uses_onednn(x_shape) or not from_dense.is_mkldnn  # blocked only where aten uses oneDNN
        for got in (from_dense, from_blocked):
            assert torch.equal(exactconv.dense(got), want), (x_shape, w_shape, unary, threads)


def test_small_1x1_on_a_blocked_input_keeps_atens_gemm_bits(threads: int) -> None:
    """Where aten runs a small 1x1 on its own GEMM, a blocked input may take oneDNN's channels-last kernel
    instead (the same sums on the 2-core VM, checked on the first call): the bits must be aten's either way,
    for this and later inputs, and the result is NCHW (a channels-last one would change later kernels)."""
    g = torch.Generator().manual_seed(4)
    w, b = torch.randn(480, 80, 1, 1, generator=g), torch.randn(480, generator=g)
    conv = exactconv.ExactConv([1, 1], [0, 0], [1, 1], 1, weight_shape=(480, 80, 1, 1), has_bias=True,
                               unary="hardtanh")
    assert not conv.uses_onednn((1, 80, 14, 14))
    with torch.inference_mode():
        for _ in range(3):
            x = torch.randn(1, 80, 14, 14, generator=g)
            got = conv(x.to_mkldnn(), w, b)
            assert got.is_contiguous() and not got.is_mkldnn
            assert torch.equal(got, F.relu6(F.conv2d(x, w, b)))
    assert conv.fused() in (0, 1)  # 1 where oneDNN's kernel gave aten's bits on the first call


def test_exact_conv_rejects_what_it_cannot_run() -> None:
    with pytest.raises(ValueError, match="unary must be one of .* got 'tanh'"):
        exactconv.ExactConv([1, 1], [0, 0], [1, 1], 1, weight_shape=(4, 4, 1, 1), has_bias=True, unary="tanh")
    with pytest.raises(ValueError, match=r"4-d .* got shape \(4, 4\)"):
        exactconv.ExactConv([1, 1], [0, 0], [1, 1], 1, weight_shape=(4, 4), has_bias=True)


def _detector_inputs() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return [torch.rand(1, 3, 224, 224, generator=g) * 2 - 1 for _ in range(2)]


@pytest.mark.parametrize("built_in", ["grad_mode", "inference_mode"])
def test_pose_detector_lowered_exactly_on_the_cpu_keeps_every_bit(threads: int, built_in: str) -> None:
    # LocalRunner loads its modules inside torch.inference_mode(): their weights are inference tensors
    with torch.inference_mode(built_in == "inference_mode"):
        model = load_model("pose_detection.tflite", "nchw").eval()
        exact = optimize_exact_for_cpu(model, _detector_inputs()[0])
    assert exact is not model, "the exact lowering fell back to the portable module"
    assert sum(isinstance(n.target, exactconv.ExactConv) for n in exact.graph.nodes) == 73  # every convolution
    with torch.inference_mode():
        for x in _detector_inputs():
            for got, want in zip(exact(x), model(x), strict=True):
                assert torch.equal(got, want)
    fused = sum(n.target.fused() for n in exact.graph.nodes if isinstance(n.target, exactconv.ExactConv))
    if FUSED_EXACT_HERE and threads == 2:  # at 1 thread aten runs every 1x1 on its GEMM: no blocked chain forms
        assert fused > 0, "none of the detector's convolutions took the fused oneDNN path"  # 60 on the 2-core VM


def test_exact_graphs_are_lowered_exactly_on_a_cpu_backend(threads: int) -> None:
    stage = stage_module("pose_detector")  # the portable stage gvirtus is sent; registered "exact"
    x = _detector_inputs()[0]
    cap = capture(stage, [x])
    assert '"options":{"exact":true}' in cap.graph_json
    graph = CompiledGraph(cap.graph_json, cap.weights, cap.input_specs, torch.device("cpu"))
    assert graph.lowered == 73
    with torch.no_grad():
        out = stage(x)
    want = list(out) if isinstance(out, (tuple, list)) else [out]
    before = COMPUTE.submit(torch.get_num_threads).result()  # graphs run on the compute thread: same count
    COMPUTE.submit(torch.set_num_threads, threads).result()
    try:
        for _ in range(2):  # the second run uses the cached kernel choices
            got = graph.run([x])
            assert len(got) == len(want)
            for g, w in zip(got, want, strict=True):
                assert not g.is_mkldnn and torch.equal(g, w)
    finally:
        COMPUTE.submit(torch.set_num_threads, before).result()
