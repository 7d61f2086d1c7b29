"""Write the seed corpus (tests/fuzz/corpus/<target>/): valid inputs of every decoder plus the hostile
inputs found by hand or by the fuzzers. Deterministic; run again after adding a seed here.

    .venv/bin/python tests/fuzz/make_corpus.py
"""

from __future__ import annotations

import io
import json
import struct
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tests.fuzz.targets import PART_SEPARATOR  # noqa: E402

CORPUS = Path(__file__).resolve().parent / "corpus"


def frame_seeds() -> dict[str, bytes]:
    from transport.frames import Frame, encode

    def join(parts: list) -> bytes:
        return PART_SEPARATOR.join(bytes(memoryview(p)) for p in parts)

    def header(**over: object) -> bytes:
        h = {"v": 1, "kind": "tryon", "id": "r1", "meta": {}, "tensors": []}
        h.update(over)
        return json.dumps(h).encode()

    tensors = {"image": np.arange(24, dtype=np.uint8).reshape(2, 4, 3), "pose": np.ones((1, 25, 3), np.float32),
               "flag": np.array([True, False]), "empty": np.zeros((0, 3), np.int64)}
    return {
        "valid_tryon": join(encode(Frame("tryon", "req-1", {"garment": "g1", "t": {"a": 1.5}}, tensors))),
        "valid_ping": join(encode(Frame("ping", "hb-1"))),
        "nested_header_10kb": b"[" * 10_000,                                     # was RecursionError (fixed)
        "nested_meta_deep": header(meta={"a": json.loads("[" * 200 + "]" * 200)}),  # decodes, would not re-encode
        "zero_element_huge_dim": header(tensors=[{"name": "t", "dtype": "uint8", "shape": [0, 2**63]}])
        + PART_SEPARATOR,                                                      # was numpy ValueError (fixed)
        "size_mismatch": header(tensors=[{"name": "t", "dtype": "float32", "shape": [4]}]) + PART_SEPARATOR + b"abc",
        "bad_dtype": header(tensors=[{"name": "t", "dtype": "object", "shape": [1]}]) + PART_SEPARATOR + b"x",
        "bool_shape": header(tensors=[{"name": "t", "dtype": "uint8", "shape": [True]}]) + PART_SEPARATOR + b"x",
        "duplicate_names": header(tensors=[{"name": "t", "dtype": "uint8", "shape": [1]}] * 2)
        + PART_SEPARATOR + b"a" + PART_SEPARATOR + b"b",
        "wrong_version": header(v=2),
        "not_utf8": b"\xff\xfe{}",
        "kind_not_string": header(kind=["x"]),
    }


def gvirtus_seeds() -> dict[str, bytes]:
    import torch

    from gvirtus import codec
    from gvirtus.graph import capture
    from gvirtus.proto import gvirtus_pb2 as pb
    from gvirtus.protocol import to_wire

    class Scale(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x * 0.5) + 1

    graph = capture(Scale(), [torch.zeros(1, 4)]).graph_json.encode()
    call = json.dumps(codec.encode_call([{"r": 0}, 2.5], {"alpha": 1}, lambda v: v if isinstance(v, dict) else None))
    return {
        "tensor_valid": b"\x00" + to_wire(torch.arange(6, dtype=torch.float32).reshape(2, 3)).SerializeToString(),
        "tensor_huge_dims_no_data": b"\x00" + pb.Tensor(dtype="float32", shape=[0, 2**62]).SerializeToString(),
        "tensor_negative_dim": b"\x00" + pb.Tensor(dtype="int8", shape=[-1], data=b"").SerializeToString(),
        "tensor_bad_dtype": b"\x00" + pb.Tensor(dtype="complex64", shape=[1], data=b"12345678").SerializeToString(),
        # found by atheris: a zero-size shape whose other dims overflow torch's stride computation (fixed)
        "tensor_stride_overflow": (b"\x00\n\x07float32\x12\n\x00\x80\x80float32\x12\n"
                                   b"\x00\x80\x80\x80\x80\x80\x80\x80\x80@"),
        "op_args_valid": b"\x01" + call.encode(),
        "op_args_deep": b"\x01" + b"[" * 5000 + b"]" * 5000,                    # was RecursionError (fixed)
        "op_args_deep_900": b"\x01[" + b"[" * 900 + b"]" * 900 + b",{}]",        # was RecursionError in decode
        "op_args_floats": b'\x01[[{"f": "nan"}, {"f": "1e999"}, {"dtype": "float32"}, {"mf": "channels_last"}], {}]',
        "graph_valid": b"\x02" + graph,
        "graph_deep": b"\x02" + b"[" * 5000,                                     # was RecursionError (fixed)
        "graph_bad_ref": b"\x02" + graph.replace(b'{"i":0}', b'{"i":7}'),
        "launch_valid": b'\x03[["b", 16]]',
        "launch_handle": b'\x03[["h", 3]]',
        "launch_bool": b'\x03[["b", true]]',
        "launch_deep": b"\x03" + b"[" * 3000,
    }


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def upload_seeds() -> dict[str, bytes]:
    from PIL import Image

    def save(img: Image.Image, fmt: str, **kw: object) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kw)
        return buf.getvalue()

    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 16, 3), dtype=np.uint8))
    jpeg = save(rgb, "JPEG", quality=80)
    bomb = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))
    return {
        "jpeg": jpeg, "jpeg_truncated": jpeg[: len(jpeg) // 2],
        "jpeg_exif_rotated": save(rgb, "JPEG", exif=_exif_orientation(6)),
        "png": save(rgb, "PNG"), "png_rgba": save(rgb.convert("RGBA"), "PNG"),
        "png_16bit_grey": save(Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000), "PNG"),
        "png_palette": save(rgb.convert("P"), "PNG", transparency=0),
        "png_bomb_header": bomb,
        "webp": save(rgb, "WEBP"), "webp_animated": save(rgb, "WEBP", save_all=True, append_images=[rgb]),
        "too_large_side": save(Image.new("RGB", (600, 10)), "PNG"),
        "not_an_image": b"GIF89a" + b"\0" * 20,
    }


def _exif_orientation(value: int) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def main() -> None:
    for target, seeds in (("frames", frame_seeds()), ("gvirtus", gvirtus_seeds()), ("upload", upload_seeds())):
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (folder / name).write_bytes(data)
        print(f"{folder}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
