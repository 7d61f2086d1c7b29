"""Frames: the one message format between node 1, node 2's gateway and the VITON service.

A frame is a small versioned JSON header plus one raw buffer per tensor:

    part 0   header (UTF-8 JSON): {"v": 1, "kind": str, "id": str, "meta": {...},
                                   "tensors": [{"name": str, "dtype": str, "shape": [int, ...]}, ...]}
    part i   the C-contiguous bytes of tensor i-1 (no copy on send: the numpy array itself)

`encode(frame)` returns the parts for zmq `send_multipart(..., copy=False)`; `decode(parts)`
checks the header, each dtype against `ALLOWED_DTYPES`, each `prod(shape) * itemsize` against
its buffer and the total against `max_bytes`, then returns numpy views over the received
buffers (read-only, zero copy). Nothing is ever pickled.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from transport.errors import DtypeNotAllowed, FrameError, FrameTooLarge

VERSION = 1
ALLOWED_DTYPES = frozenset({"uint8", "int8", "uint16", "int16", "int32", "int64",
                            "float16", "float32", "float64", "bool"})
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADER_DEPTH = 32   # lists/objects nested in a header (real ones: 3); deeper meta could not be re-encoded
MAX_TENSORS = 64
MAX_NDIM = 8
MAX_DIM = 2**31 - 1  # per dimension; numpy refuses far larger ones with its own ValueError
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
NAME_MAX_CHARS = 64

Buffer = bytes | bytearray | memoryview | np.ndarray

# Prebuilt codecs and lookups: a 4 KB message's header costs more than its payload, so the
# per-message work is kept to table lookups (numpy's `dtype.name` alone is ~2.5 us).
_JSON_OUT = json.JSONEncoder(separators=(",", ":"))
_JSON_IN = json.JSONDecoder()
_NAME_OF_DTYPE = {np.dtype(n): n for n in ALLOWED_DTYPES}   # native byte order only
_DTYPE_OF_NAME = {n: np.dtype(n) for n in ALLOWED_DTYPES}


def view(buf: Any) -> memoryview:
    """A memoryview of anything with the buffer protocol (bytes, ndarray, zmq.Frame, ...)."""
    return memoryview(buf)


@dataclass
class Frame:
    """One message.

    Attributes:
        kind: what the message is, e.g. "tryon", "result", "error", "garment", "ping".
        request_id: matches replies to requests (any short string).
        meta: small JSON-able dict (timings, ids, error code/message).
        tensors: name -> numpy array (any allowed dtype, any shape up to MAX_NDIM dims).
    """

    kind: str
    request_id: str
    meta: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(int(t.nbytes) for t in self.tensors.values())


def encode(frame: Frame) -> list[Buffer]:
    """Header + one buffer per tensor. Arrays are made C-contiguous and native-endian (copied
    only if they were not: the wire carries the sender's native = little-endian layout)."""
    specs, bufs = [], []
    for name, arr in frame.tensors.items():
        a = np.ascontiguousarray(arr)
        dtype = _NAME_OF_DTYPE.get(a.dtype)
        if dtype is None:
            dtype = a.dtype.name
            if dtype not in ALLOWED_DTYPES:
                raise DtypeNotAllowed(f"tensor {name!r} has dtype {dtype}; allowed: {sorted(ALLOWED_DTYPES)}")
            a = a.astype(a.dtype.newbyteorder("="))  # e.g. big-endian '>u2': same values, native bytes
        specs.append({"name": name, "dtype": dtype, "shape": list(a.shape)})
        bufs.append(a)
    header = _JSON_OUT.encode({"v": VERSION, "kind": frame.kind, "id": frame.request_id,
                               "meta": frame.meta, "tensors": specs}).encode()
    return [header, *bufs]


def _field(header: dict, key: str, typ: type) -> Any:
    value = header.get(key)
    if not isinstance(value, typ):
        raise FrameError(f"frame header field {key!r} must be {typ.__name__}, got {value!r:.80}")
    return value


def _nesting(value: Any) -> int:
    """How deeply lists and objects nest in a decoded header (iterative: no recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, depth)
            if deepest > MAX_HEADER_DEPTH:
                return deepest
            stack.extend((c, depth + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def decode_header(raw: Buffer) -> dict:
    """Parse and check a header (size, JSON, version, fields). Returns the header dict."""
    mv = view(raw)
    if mv.nbytes > MAX_HEADER_BYTES:
        raise FrameTooLarge(f"frame header is {mv.nbytes} bytes; the limit is {MAX_HEADER_BYTES}")
    try:
        text = str(mv, "utf-8")
        header = _JSON_IN.decode(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FrameError(f"frame header is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # e.g. 10 KB of "[[[[..." : the parser's stack, not ours, gives up
        raise FrameError("frame header is nested too deeply to be a frame header") from exc
    if not isinstance(header, dict):
        raise FrameError(f"frame header must be a JSON object, got {type(header).__name__}")
    # Nesting deeper than N needs N openers: counting them (C speed) spares the walk for usual headers.
    if text.count("[") + text.count("{") > MAX_HEADER_DEPTH and _nesting(header) > MAX_HEADER_DEPTH:
        raise FrameError(f"frame header nests lists/objects deeper than {MAX_HEADER_DEPTH} levels")
    if header.get("v") != VERSION:
        raise FrameError(f"frame version {header.get('v')!r} is not supported; this side speaks v{VERSION}")
    specs: Any = header.get("tensors")
    if not (type(header.get("kind")) is str and type(header.get("id")) is str
            and type(header.get("meta")) is dict and type(specs) is list):  # JSON makes exact types
        for key, typ in (("kind", str), ("id", str), ("meta", dict), ("tensors", list)):
            _field(header, key, typ)  # raises, naming the first bad field
    if len(specs) > MAX_TENSORS:
        raise FrameError(f"frame has {len(specs)} tensors; the limit is {MAX_TENSORS}")
    return header


def tensor_nbytes(spec: Any) -> tuple[str, np.dtype, tuple[int, ...], int]:
    """Check one tensor spec; returns (name, dtype, shape, nbytes)."""
    if not isinstance(spec, dict):
        raise FrameError(f"tensor spec must be an object, got {spec!r:.80}")
    name, dtype, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
    if not isinstance(name, str) or not 0 < len(name) <= NAME_MAX_CHARS:
        raise FrameError(f"tensor name must be a string of 1..{NAME_MAX_CHARS} chars, got {name!r:.80}")
    if type(dtype) is not str or dtype not in ALLOWED_DTYPES:  # a list is not even hashable
        raise DtypeNotAllowed(f"tensor {name!r} has dtype {dtype!r:.40}; allowed: {sorted(ALLOWED_DTYPES)}")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(
            type(d) is int and 0 <= d <= MAX_DIM for d in shape):  # type(): bool is not a size
        raise FrameError(f"tensor {name!r} shape must be a list of at most {MAX_NDIM} ints in 0..{MAX_DIM}, "
                         f"got {shape!r:.80}")
    dt = _DTYPE_OF_NAME[dtype]
    return name, dt, tuple(shape), math.prod(shape) * dt.itemsize


def decode(parts: Sequence[Buffer], max_bytes: int = DEFAULT_MAX_BYTES) -> Frame:
    """Check and decode a received multipart message into a Frame (numpy views, no copy).

    Raises:
        FrameError / FrameTooLarge / DtypeNotAllowed: naming the offending field and value.
    """
    if not parts:
        raise FrameError("empty message: expected a header part")
    header = decode_header(parts[0])
    specs = header["tensors"]
    bufs = [view(p) for p in parts[1:]]
    if len(bufs) != len(specs):
        raise FrameError(f"frame header lists {len(specs)} tensors but {len(bufs)} buffers arrived")
    total = sum(mv.nbytes for mv in bufs)
    if total > max_bytes:
        raise FrameTooLarge(f"frame carries {total} bytes; the limit is {max_bytes}")
    tensors: dict[str, np.ndarray] = {}
    for spec, mv in zip(specs, bufs, strict=True):
        name, dt, shape, nbytes = tensor_nbytes(spec)
        if mv.nbytes != nbytes:
            raise FrameError(f"tensor {name!r}: header says {dt.name}{list(shape)} = {nbytes} bytes, "
                             f"buffer has {mv.nbytes}")
        if name in tensors:
            raise FrameError(f"tensor name {name!r} appears twice")
        arr = np.frombuffer(mv if mv.format == "B" and mv.ndim == 1 else mv.cast("B"), dtype=dt)
        tensors[name] = arr.reshape(shape) if len(shape) != 1 else arr
    return Frame(kind=header["kind"], request_id=header["id"], meta=header["meta"], tensors=tensors)


def error_frame(request_id: str, code: str, message: str, **meta: Any) -> Frame:
    """The reply every receiver sends for a request it cannot serve."""
    return Frame(kind="error", request_id=request_id, meta={"code": code, "message": message, **meta})


def new_request_id() -> str:
    """A fresh request id (16 hex characters)."""
    return uuid.uuid4().hex[:16]
