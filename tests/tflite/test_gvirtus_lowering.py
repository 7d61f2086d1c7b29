"""node1.tflite.cpu (the local CPU path) and gvirtus.lowering (a CPU backend) apply the same fusion rules:
the same model gives bit-identical outputs both ways, so node 1 sees the same numbers locally and remotely."""

from __future__ import annotations

import pytest
import torch

from gvirtus.graph import CompiledGraph, capture
from node1.tflite import load_model
from node1.tflite.cpu import optimize_for_cpu

pytestmark = [pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN"),
              pytest.mark.usefixtures("one_torch_thread")]


@pytest.mark.parametrize(("file_name", "size"), [("face_detection_short_range.tflite", 128),
                                                 ("selfie_segmentation.tflite", 256)])
def test_backend_lowering_equals_the_local_cpu_lowering(file_name: str, size: int) -> None:
    model = load_model(file_name, "nchw").eval()
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(3))
    local = optimize_for_cpu(model, x)
    cap = capture(model, [x])
    graph = CompiledGraph(cap.graph_json, cap.weights, cap.input_specs, torch.device("cpu"))
    assert graph.lowered > 0
    with torch.inference_mode():
        want = local(x)
    for got, ref in zip(graph.run([x]), want, strict=True):
        torch.testing.assert_close(got, ref, rtol=0, atol=0)
