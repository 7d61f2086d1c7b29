"""Loader behaviour: typed errors, buffers, devices, layouts, folding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mirror import model_path
from node1.tflite import ModelFormatError, UnsupportedOp, load_model, load_tflite, read_model
from node1.tflite.builder import build_module, same_pads


def test_unsupported_op_names_op_and_model() -> None:
    ir = read_model(model_path("face_detection_short_range.tflite"))
    ir.ops[3].name = "FULLY_CONNECTED"
    with pytest.raises(UnsupportedOp, match=r"FULLY_CONNECTED.*face_detection_short_range") as info:
        build_module(ir)
    assert info.value.op == "FULLY_CONNECTED"
    assert info.value.model == "face_detection_short_range"


def test_garbage_file_is_a_format_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelFormatError, match="bad.tflite"):
        load_tflite(bad)


def test_storage_ops_are_folded_and_constants_are_buffers() -> None:
    ir = read_model(model_path("pose_detection.tflite"))
    names = {op.name for op in ir.ops}
    assert "DEQUANTIZE" not in names and "DENSIFY" not in names
    module = load_model("pose_detection.tflite")
    assert len(list(module.parameters())) == 0
    buffers = list(module.buffers())
    assert buffers and all(b.dtype == torch.float32 for b in buffers)
    # the sparse (CSR) weights really are filled in: a densified 1x1 conv kernel has zeros and non-zeros
    dense = [c for c in ir.constants.values() if c.shape == (16, 1, 1, 24)]
    assert dense and 0 < np.count_nonzero(dense[0]) < dense[0].size


def test_nchw_layout_matches_nhwc() -> None:
    a = load_model("selfie_segmentation.tflite", layout="nhwc")
    b = load_model("selfie_segmentation.tflite", layout="nchw")
    x = torch.rand(1, 256, 256, 3)
    with torch.inference_mode():
        ya, yb = a(x)[0], b(x.permute(0, 3, 1, 2))[0]
    assert yb.shape == (1, 1, 256, 256)
    torch.testing.assert_close(ya.permute(0, 3, 1, 2), yb)


def test_bad_layout_is_rejected() -> None:
    with pytest.raises(ValueError, match="layout"):
        load_model("pose_detection.tflite", layout="chw")


def test_same_padding_is_tf_asymmetric() -> None:
    assert same_pads(224, 3, 2) == (0, 1)  # TF puts the odd pixel at the end
    assert same_pads(7, 3, 1) == (1, 1)
    assert same_pads(8, 2, 2) == (0, 0)


def test_traces_with_make_fx() -> None:
    from torch.fx.experimental.proxy_tensor import make_fx

    module = load_model("face_detection_short_range.tflite")
    x = torch.rand(1, 128, 128, 3) * 2 - 1
    traced = make_fx(module)(x)
    with torch.inference_mode():
        torch.testing.assert_close(traced(x), module(x))
