"""Op arguments as JSON data (never pickle): the encoding shared by graphs and the transparent layer.

    None, bool, int, str      as themselves          float      {"f": 0.5} (also "nan", "inf", "-inf")
    list / tuple / Size       [ ... ]                torch.dtype {"dtype": "float32"}
    torch.device              {"device": "cpu"}      (the backend substitutes its own device)
    torch.layout              {"layout": "strided"}  torch.memory_format {"mf": "channels_last"}
    a tensor                  {"<kind>": index}      kinds: "w" weight/constant, "i" graph input,
                                                     "n" node output, "r" remote id, "c" inline constant
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch

from gvirtus.errors import InvalidRequest
from gvirtus.protocol import DTYPE_NAMES, DTYPES

REF_KINDS = ("w", "i", "n", "r", "c")
MAX_JSON_DEPTH = 64   # nesting of op arguments, graphs and launch lists from the network (real ones: < 10)
_LAYOUTS = {"strided": torch.strided}
_FORMATS = {"contiguous_format": torch.contiguous_format, "channels_last": torch.channels_last,
            "preserve_format": torch.preserve_format, "channels_last_3d": torch.channels_last_3d}
_FORMAT_NAMES = {v: k for k, v in _FORMATS.items()}


class Ref:
    """A decoded tensor reference, resolved at run time: kind in REF_KINDS, index."""

    __slots__ = ("index", "kind")

    def __init__(self, kind: str, index: int) -> None:
        self.kind = kind
        self.index = index

    def __repr__(self) -> str:
        return f"Ref({self.kind}{self.index})"


def loads(text: str | bytes | bytearray, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON that came from the network.

    Raises:
        InvalidRequest: naming `what`, when the text is not JSON (or not UTF-8), or nests lists and
        objects deeper than `max_depth` (json's own parser gives up near the interpreter's recursion
        limit with RecursionError, and deep data would recurse again in `decode`).
    """
    try:
        data = json.loads(text)
    except RecursionError:
        raise InvalidRequest(f"{what} nests deeper than {max_depth} levels") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise InvalidRequest(f"{what} is not JSON ({reason})") from None
    check_depth(data, max_depth, what)
    return data


def check_depth(data: Any, max_depth: int, what: str) -> None:
    """InvalidRequest when lists/objects in `data` nest deeper than `max_depth` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, list | dict):
            if depth > max_depth:
                raise InvalidRequest(f"{what} nests deeper than {max_depth} levels")
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))


def encode(value: Any, ref: Callable[[Any], dict[str, int] | None]) -> Any:
    """`value` (an op argument) as JSON-able data.

    `ref(v)` is asked first for every value: a dict such as {"n": 3} stands for it (tensors,
    graph nodes); None means "encode it as a plain value" (a tensor then is an error).
    """
    r = ref(value)
    if r is not None:
        return r
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, torch.Tensor):
        raise InvalidRequest(f"unexpected tensor (shape {list(value.shape)}, {value.dtype}) in an op argument")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return {"f": value if math.isfinite(value) else repr(value)}
    if isinstance(value, list | tuple):
        return [encode(v, ref) for v in value]
    if isinstance(value, torch.dtype):
        if value not in DTYPE_NAMES:
            raise InvalidRequest(f"dtype {value} cannot be sent to the backend; allowed: {sorted(DTYPES)}")
        return {"dtype": DTYPE_NAMES[value]}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    if isinstance(value, torch.layout):
        if value is not torch.strided:
            raise InvalidRequest(f"layout {value} is not supported; only torch.strided")
        return {"layout": "strided"}
    if isinstance(value, torch.memory_format):
        return {"mf": _FORMAT_NAMES[value]}
    if isinstance(value, torch.SymInt | torch.SymFloat | torch.SymBool):
        raise InvalidRequest(f"symbolic value {value} cannot be sent; capture the graph with concrete shapes")
    raise InvalidRequest(f"argument {value!r} of type {type(value).__name__} cannot be sent to the backend")


def encode_call(args: Any, kwargs: dict[str, Any], ref: Callable[[Any], dict[str, int] | None]) -> list[Any]:
    """[args, kwargs] of one op call as JSON-able data."""
    return [encode(list(args), ref), {str(k): encode(v, ref) for k, v in kwargs.items()}]


def decode_call(data: Any, device: torch.device) -> tuple[list[Any], dict[str, Any]]:
    """Inverse of `encode_call` (refs become `Ref`s)."""
    if not (isinstance(data, list) and len(data) == 2 and isinstance(data[0], list) and isinstance(data[1], dict)):
        raise InvalidRequest("op call must be encoded as [args, kwargs]")
    return decode(data[0], device), {str(k): decode(v, device) for k, v in data[1].items()}


def decode(data: Any, device: torch.device) -> Any:
    """JSON data back to an op argument; tensor references become `Ref`s (see `substitute`)."""
    if data is None or isinstance(data, bool | int | str):
        return data
    if isinstance(data, list):
        return [decode(v, device) for v in data]
    if isinstance(data, dict) and len(data) == 1:
        (key, val), = data.items()
        if key in REF_KINDS and isinstance(val, int) and not isinstance(val, bool) and val >= 0:
            return Ref(key, val)
        if key == "f" and isinstance(val, int | float | str) and not isinstance(val, bool):
            try:
                return float(val)
            except ValueError:
                pass
        elif key == "dtype" and val in DTYPES:
            return DTYPES[val]
        elif key == "device" and isinstance(val, str):
            return device
        elif key == "layout" and val in _LAYOUTS:
            return _LAYOUTS[val]
        elif key == "mf" and val in _FORMATS:
            return _FORMATS[val]
    raise InvalidRequest(f"cannot decode op argument {str(data)[:200]!r}")


def has_refs(value: Any) -> bool:
    if isinstance(value, Ref):
        return True
    if isinstance(value, list):
        return any(has_refs(v) for v in value)
    return False


def substitute(value: Any, lookup: Callable[[Ref], Any]) -> Any:
    """`value` with every `Ref` replaced by `lookup(ref)`."""
    if isinstance(value, Ref):
        return lookup(value)
    if isinstance(value, list):
        return [substitute(v, lookup) for v in value]
    return value


def node_refs(value: Any) -> Iterator[int]:
    """The node indices ({"n": j} references) anywhere in a decoded argument structure."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, Ref):
            if v.kind == "n":
                yield v.index
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.values())
