"""Protocol constants and the tensor <-> wire conversions shared by frontend and backend.

Tensors travel as (dtype name, shape, raw C-contiguous bytes). Only the dtypes in `DTYPES` are
accepted; every buffer's length is checked against prod(shape) * itemsize before use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from gvirtus.errors import InvalidRequest
from gvirtus.proto import gvirtus_pb2 as pb

PROTOCOL_VERSION = 2                # 2: op K keeps outputs one by one (gvirtus.datachannel)
SESSION_METADATA_KEY = "gvirtus-session"
ERROR_METADATA_KEY = "gvirtus-error"
MIB = 1024 * 1024

DEFAULT_PORT = 8888
DEFAULT_MAX_MESSAGE_MB = 256
COPY_CHUNK_BYTES = 1 * MIB          # memcpy and module-weight streams are cut into chunks of this size
CHUNK_HEADROOM_BYTES = 1024         # protobuf framing around a chunk (chunks stay under the message limit)
SESSION_TIMEOUT_S = 10.0            # a session silent this long is freed (overridable on the backend)
HEARTBEATS_PER_TIMEOUT = 4          # the client heartbeats this many times per session timeout
REAPER_INTERVAL_S = 0.5             # how often the backend looks for expired sessions
CONNECT_TIMEOUT_S = 5.0             # waiting for the channel to become ready
CALL_TIMEOUT_S = 60.0               # default deadline of a unary call (launches included)
HEARTBEAT_TIMEOUT_S = 2.0           # deadline of one heartbeat call
MAX_NDIM = 16                       # dimensions of a tensor on the wire
MAX_ELEMENTS = 2**48                # product of a wire shape's dimensions (zeros counted as 1): strides fit int64
PIPELINE_MAX_BATCH = 512            # items coalesced into one pipeline message
CLIENT_HANDLE_BASE = 1 << 62        # ids the transparent layer chooses itself start here
SERVER_WORKERS = 16                 # gRPC worker threads on the backend
HTTP2_MAX_FRAME_BYTES = (1 << 24) - 1   # largest HTTP/2 frame: big copies go in few frames (default 16 KB)
HTTP2_STREAM_WINDOW_BYTES = 16 * MIB    # initial per-call flow-control window (default 64 KB: a 1 MB copy
                                        # would wait for several window updates)


def channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    """gRPC options shared by client and backend: message limits and large HTTP/2 frames."""
    return [("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.http2.max_frame_size", HTTP2_MAX_FRAME_BYTES),
            ("grpc.http2.lookahead_bytes", HTTP2_STREAM_WINDOW_BYTES)]

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "float64": torch.float64, "int64": torch.int64, "int32": torch.int32, "int16": torch.int16,
    "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
}
DTYPE_NAMES: dict[torch.dtype, str] = {v: k for k, v in DTYPES.items()}


def chunk_bytes(max_message_bytes: int) -> int:
    """Chunk size for streamed copies: COPY_CHUNK_BYTES, or less under a small message limit."""
    return max(1, min(COPY_CHUNK_BYTES, max_message_bytes - CHUNK_HEADROOM_BYTES))


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype for a wire dtype name; InvalidRequest names the allowed ones."""
    try:
        return DTYPES[name]
    except KeyError:
        raise InvalidRequest(f"dtype {name!r} is not allowed; use one of {sorted(DTYPES)}") from None


def dtype_name(dtype: torch.dtype | np.dtype | str) -> str:
    """The wire name of a torch / numpy dtype (or a name), checked against the allowlist."""
    if isinstance(dtype, torch.dtype):
        name = DTYPE_NAMES.get(dtype)
        if name is None:
            raise InvalidRequest(f"dtype {dtype} is not allowed; use one of {sorted(DTYPES)}")
        return name
    name = np.dtype(dtype).name if not isinstance(dtype, str) or dtype not in DTYPES else dtype
    torch_dtype(name)
    return name


def check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """A shape from the wire as a tuple, refused (InvalidRequest) when a tensor of it cannot exist: a
    negative dimension, more than MAX_NDIM dimensions, or strides past int64 (even with a zero-size
    dimension elsewhere, torch computes the strides and fails with its own RuntimeError)."""
    out = tuple(int(s) for s in shape)
    if any(s < 0 for s in out):
        raise InvalidRequest(f"shape {list(out)[:MAX_NDIM + 1]} has a negative dimension")
    if len(out) > MAX_NDIM:
        raise InvalidRequest(f"shape has {len(out)} dimensions; at most {MAX_NDIM}")
    if math.prod(max(s, 1) for s in out) > MAX_ELEMENTS:
        raise InvalidRequest(f"shape {list(out)} spans more than {MAX_ELEMENTS} elements (strides overflow)")
    return out


def nbytes_of(dtype: str, shape: Sequence[int]) -> int:
    return math.prod(check_shape(shape)) * torch.empty((), dtype=torch_dtype(dtype)).element_size()


def to_cpu_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous()


def tensor_bytes(t: torch.Tensor) -> bytes:
    """Raw bytes of a CPU contiguous tensor (one copy; bfloat16/bool included)."""
    t = to_cpu_contiguous(t)
    if t.numel() == 0:
        return b""
    return t.view(-1).view(torch.uint8).numpy().tobytes()


def to_wire(t: torch.Tensor | np.ndarray) -> pb.Tensor:
    """A host tensor or array as a wire Tensor."""
    if isinstance(t, np.ndarray):
        arr = np.ascontiguousarray(t)
        return pb.Tensor(dtype=dtype_name(arr.dtype), shape=arr.shape, data=arr.tobytes())
    return pb.Tensor(dtype=dtype_name(t.dtype), shape=tuple(t.shape), data=tensor_bytes(t))


def bytes_to_tensor(data: bytes | bytearray | memoryview, dtype: str, shape: Sequence[int]) -> torch.Tensor:
    """A new CPU tensor holding `data` (copied: the result is writable and owns its memory)."""
    dims = check_shape(shape)
    expected = nbytes_of(dtype, dims)
    if len(data) != expected:
        raise InvalidRequest(f"tensor data has {len(data)} bytes but dtype {dtype} and shape {list(dims)} "
                             f"need {expected}")
    out = torch.empty(dims, dtype=torch_dtype(dtype))
    if expected:
        out.view(-1).view(torch.uint8).numpy()[:] = np.frombuffer(data, dtype=np.uint8)
    return out


def from_wire(msg: pb.Tensor) -> torch.Tensor:
    """A wire Tensor as a CPU torch tensor (validated: dtype allowlist, byte count)."""
    return bytes_to_tensor(msg.data, msg.dtype, msg.shape)
