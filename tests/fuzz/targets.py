"""Fuzz targets: the decoders that read bytes from the network, each as `target(data: bytes) -> None`.

A target returns normally when the decoder accepted the input or refused it with its package's typed
error; anything else (another exception, a hang, a crash) is a bug in the decoder. The same functions
run under atheris (tests/fuzz/run_atheris.py, coverage-guided) and in-process over the corpus
(tests/fuzz/test_fuzz.py). Input layouts:

    frames   parts of one multipart message, separated by PART_SEPARATOR (part 0 = the header)
    gvirtus  first byte picks the decoder (mod 4), the rest is its input:
               0 a gRPC `Tensor` message (protobuf bytes) -> gvirtus.protocol.from_wire
               1 op-call arguments JSON (Pipeline op)     -> the executor's decoding (codec)
               2 module graph JSON (RegisterModule)       -> gvirtus.graph.CompiledGraph
               3 data-channel launch list JSON (op K)     -> gvirtus.dataserver's decoding
    upload   the raw bytes of an uploaded photo          -> node1.web.uploads.decode_upload
"""

from __future__ import annotations

from collections.abc import Callable

PART_SEPARATOR = b"\n--part--\n"
FRAME_MAX_BYTES = 1 << 20
UPLOAD_MAX_BYTES = 2 << 20
UPLOAD_MAX_SIDE = 512
GRAPH_INPUT = ("float32", (1, 4))          # the one input spec graphs and launch lists are checked against
LAUNCH_HOST_BYTES = 16                     # the body a launch list must declare (one float32 (1, 4) input)


def frames(data: bytes) -> None:
    """transport.frames.decode / decode_header; a decoded frame must encode and decode back the same."""
    from transport.errors import FrameError
    from transport.frames import decode, decode_header, encode

    parts = data.split(PART_SEPARATOR)
    try:
        decode_header(parts[0])
    except FrameError:
        pass
    try:
        frame = decode(parts, max_bytes=FRAME_MAX_BYTES)
    except FrameError:
        return
    again = decode([bytes(memoryview(p)) for p in encode(frame)], max_bytes=FRAME_MAX_BYTES)
    if (again.kind, again.request_id, again.meta, list(again.tensors)) != (
            frame.kind, frame.request_id, frame.meta, list(frame.tensors)):
        raise AssertionError("a decoded frame did not survive encode -> decode")
    for name, arr in frame.tensors.items():
        if arr.tobytes() != again.tensors[name].tobytes():
            raise AssertionError(f"tensor {name!r} changed over encode -> decode")


def gvirtus(data: bytes) -> None:
    """The backend's request decoders; only gvirtus errors (typed) may leave them."""
    from gvirtus.errors import GvirtusError

    if not data:
        return
    kind, body = data[0] % 4, data[1:]
    try:
        _GVIRTUS_DECODERS[kind](body)
    except GvirtusError:
        pass


def _tensor_message(body: bytes) -> None:
    from google.protobuf.message import DecodeError

    from gvirtus.proto import gvirtus_pb2 as pb
    from gvirtus.protocol import from_wire

    try:
        msg = pb.Tensor.FromString(body)
    except DecodeError:
        return        # refused by protobuf itself, before our code (gRPC answers INTERNAL, the server goes on)
    from_wire(msg)


def _op_arguments(body: bytes) -> None:
    import torch

    from gvirtus.executor import OpExecutor

    text = body.decode("utf-8", errors="replace")   # proto3 strings arrive as valid UTF-8
    OpExecutor(torch.device("cpu"))._decoded("aten::add.Tensor", text)


def _module_graph(body: bytes) -> None:
    import torch

    from gvirtus.graph import CompiledGraph, Spec

    CompiledGraph(body.decode("utf-8", errors="replace"), [], [Spec(GRAPH_INPUT[0], GRAPH_INPUT[1])],
                  torch.device("cpu"))


def _launch_list(body: bytes) -> None:
    from gvirtus.codec import loads
    from gvirtus.dataserver import _launch_plan
    from gvirtus.graph import Spec

    _launch_plan(loads(body, "launch: the input list"), [Spec(GRAPH_INPUT[0], GRAPH_INPUT[1])], LAUNCH_HOST_BYTES)


_GVIRTUS_DECODERS: tuple[Callable[[bytes], None], ...] = (_tensor_message, _op_arguments, _module_graph, _launch_list)


def upload(data: bytes) -> None:
    """node1.web.uploads.decode_upload: an (H, W, 3) uint8 image within the limits, or an UploadError."""
    from node1.tryon import UploadError
    from node1.web.uploads import decode_upload

    try:
        image = decode_upload(data, UPLOAD_MAX_BYTES, UPLOAD_MAX_SIDE)
    except UploadError:
        return
    h, w, c = image.shape
    if image.dtype.name != "uint8" or c != 3 or not (0 < h <= UPLOAD_MAX_SIDE and 0 < w <= UPLOAD_MAX_SIDE):
        raise AssertionError(f"decode_upload returned {image.dtype} {image.shape} for limits {UPLOAD_MAX_SIDE}")


TARGETS: dict[str, Callable[[bytes], None]] = {"frames": frames, "gvirtus": gvirtus, "upload": upload}
# What atheris instruments for coverage, per target (our decoders, and PIL's Python image plugins).
INSTRUMENT: dict[str, list[str]] = {"frames": ["transport"], "gvirtus": ["gvirtus"], "upload": ["node1", "PIL"]}
