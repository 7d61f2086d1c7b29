"""gvirtus.lowering: a CPU backend runs convolution chains as oneDNN fused calls with the same values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gvirtus.graph import CompiledGraph, capture

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")


class Chains(torch.nn.Module):
    """Every chain form the lowering knows, plus the ones it must leave alone."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(torch.randn(8, 3, 3, 3, generator=g) * 0.3)
        self.b1 = torch.nn.Parameter(torch.randn(8, generator=g) * 0.1)
        self.w2 = torch.nn.Parameter(torch.randn(8, 1, 3, 3, generator=g) * 0.3)   # depthwise
        self.w3 = torch.nn.Parameter(torch.randn(8, 8, 1, 1, generator=g) * 0.3)
        self.w4 = torch.nn.Parameter(torch.randn(4, 8, 3, 3, generator=g) * 0.3)
        self.bias_map = torch.nn.Parameter(torch.randn(1, 8, 1, 1, generator=g))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a = F.relu6(F.conv2d(x, self.w1, self.b1, padding=1))                 # conv -> relu6
        b = F.relu(F.conv2d(a, self.w2, None, padding=1, groups=8) + a)      # conv -> add -> relu
        c = F.conv2d(b, self.w3) + self.bias_map                             # add of another shape: unfused add
        d = torch.tanh(F.conv2d(c, self.w4, stride=2))                       # conv alone (tanh is not fused)
        e = F.conv2d(b, self.w3)                                             # a conv whose output is returned
        return d, e, e * 2


def _compiled(module: torch.nn.Module, x: torch.Tensor) -> CompiledGraph:
    cap = capture(module.eval(), [x])
    return CompiledGraph(cap.graph_json, cap.weights, cap.input_specs, torch.device("cpu"))


def test_chains_are_fused_and_keep_their_values() -> None:
    x = torch.rand(1, 3, 20, 17, generator=torch.Generator().manual_seed(1))
    model = Chains()
    graph = _compiled(model, x)
    assert graph.lowered == 5
    with torch.no_grad():
        want = model(x)
    for _ in range(2):  # the second run uses the weights packed by the first
        got = graph.run([x])
        for g, w in zip(got, want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)


def test_exact_modules_are_lowered_bit_exactly() -> None:
    x = torch.rand(1, 3, 20, 17, generator=torch.Generator().manual_seed(2))
    model = Chains()
    model.gvirtus_exact = True
    graph = _compiled(model, x)
    assert graph.lowered == 5  # every convolution, by gvirtus.exactconv's rules (tests/gvirtus/test_exactconv.py)
    with torch.no_grad():
        want = model(x)
    for g, w in zip(graph.run([x]), want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
