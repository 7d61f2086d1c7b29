"""What the fuzzers (and the hand-made hostile inputs before them) found, each pinned by name: the
decoder now refuses the input with its typed error, naming what was wrong."""

from __future__ import annotations

import json

import pytest
import torch

from gvirtus import InvalidRequest
from gvirtus.executor import OpExecutor
from gvirtus.graph import CompiledGraph, Spec
from gvirtus.proto import gvirtus_pb2 as pb
from gvirtus.protocol import from_wire
from transport.errors import FrameError
from transport.frames import MAX_HEADER_DEPTH, Frame, decode, decode_header, encode

CPU = torch.device("cpu")


def test_tensor_shape_whose_strides_overflow_is_refused() -> None:
    """atheris: a zero-size shape with huge other dimensions made torch.empty raise RuntimeError
    ('Stride calculation overflowed') inside from_wire."""
    msg = pb.Tensor(dtype="float32", shape=[0, 1671168, 108, 111, 97, 116, 51, 50, 0, 2**62])
    with pytest.raises(InvalidRequest, match="strides overflow"):
        from_wire(msg)
    with pytest.raises(InvalidRequest, match="at most 16"):
        from_wire(pb.Tensor(dtype="uint8", shape=[1] * 17, data=b"\0"))
    assert from_wire(pb.Tensor(dtype="float32", shape=[0, 2**40])).shape == (0, 2**40)   # still a valid tensor


@pytest.mark.parametrize("text", ["[" * 5000 + "]" * 5000, "[" * 100_000, "[[" + "[" * 900 + "]" * 900 + "],{}]",
                                  '[[{"a":' * 3000 + "1" + "}" * 3000 + "],{}]"])
def test_deeply_nested_op_arguments_are_refused(text: str) -> None:
    """By hand, then as corpus seeds: json's parser (and codec.decode) hit RecursionError, which the
    backend reported as RemoteExecutionError instead of a bad request."""
    with pytest.raises(InvalidRequest, match="op aten::add.Tensor: the arguments (nests deeper|is not JSON)"):
        OpExecutor(CPU)._decoded("aten::add.Tensor", text)


def test_deeply_nested_module_graph_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="module graph nests deeper than 64 levels"):
        CompiledGraph("[" * 5000, [], [Spec("float32", (1, 4))], CPU)
    with pytest.raises(InvalidRequest, match="module graph is not JSON"):
        CompiledGraph("{", [], [], CPU)


def test_launch_list_bool_and_depth_are_refused() -> None:
    from gvirtus.codec import loads
    from gvirtus.dataserver import _launch_plan

    spec = [Spec("float32", (1, 4))]
    with pytest.raises(InvalidRequest, match=r"expected \[\"h\", id\]"):
        _launch_plan(json.loads('[["b", true]]'), spec, 16)
    with pytest.raises(InvalidRequest, match="launch: the input list nests deeper"):
        loads(b"[" * 3000, "launch: the input list")
    assert _launch_plan([["b", 16]], spec, 16) == {0: torch.float32}


def test_frame_header_nesting_is_bounded_so_every_decoded_frame_re_encodes() -> None:
    """A meta nested a few hundred levels decoded, but could not always be encoded again (the JSON
    encoder recursing deeper than the decoder, e.g. where the gateway forwards a frame)."""
    deep = json.dumps({"v": 1, "kind": "k", "id": "i", "meta": {"a": json.loads("[" * 200 + "]" * 200)},
                       "tensors": []}).encode()
    with pytest.raises(FrameError, match=f"deeper than {MAX_HEADER_DEPTH} levels"):
        decode_header(deep)
    with pytest.raises(FrameError, match="nested too deeply|not valid JSON"):
        decode([b"[" * 10_000])
    ok = Frame("k", "i", {"a": {"b": [1, [2, [3]]]}})
    assert decode([bytes(memoryview(p)) for p in encode(ok)]).meta == ok.meta
