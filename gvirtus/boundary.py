"""What both of the backend's servers check and do at their boundary (the gRPC servicer, gvirtus.server,
and the bulk data channel, gvirtus.dataserver): a buffer's raw bytes, byte ranges inside it, a launch's
inputs against the module's registered specs, a launch's outputs kept in the session. Each check raises
gvirtus.errors.InvalidRequest naming the handle, range or input and what was expected."""

from __future__ import annotations

from typing import Any

import torch

from gvirtus.errors import InvalidRequest
from gvirtus.graph import Spec
from gvirtus.protocol import nbytes_of, torch_dtype
from gvirtus.sessions import Session


def byte_view(t: torch.Tensor, what: str) -> torch.Tensor:
    """A contiguous tensor's memory as a flat uint8 tensor (no copy)."""
    if not t.is_contiguous():
        raise InvalidRequest(f"{what} is a non-contiguous view; copy it (clone) before raw memory access")
    return t.reshape(-1).view(torch.uint8)


def check_range(offset: int, nbytes: int, size: int, what: str) -> None:
    if offset + nbytes > size:
        raise InvalidRequest(f"{what}: bytes [{offset}, {offset + nbytes}) are outside the buffer of {size} bytes")


def check_input(k: int, t: torch.Tensor, spec: Spec) -> torch.Tensor:
    """Launch input k, if it has the registered dtype and shape (InvalidRequest naming both otherwise)."""
    got = Spec(str(t.dtype).removeprefix("torch."), tuple(t.shape))
    if got != spec:
        raise InvalidRequest(f"launch input {k}: expected {spec.dtype} {list(spec.shape)}, got {got.dtype} "
                             f"{list(got.shape)} (modules are registered for fixed shapes; register again "
                             "for other sizes)")
    return t


def handle_input(s: Session, k: int, hid: int, spec: Spec) -> torch.Tensor:
    """Launch input k from handle `hid`; a raw malloc buffer (uint8, the right size) is typed to `spec`."""
    t = s.get(hid)
    raw = t.dtype == torch.uint8 and t.is_contiguous() and t.numel() == nbytes_of(spec.dtype, spec.shape)
    if raw and (spec.dtype != "uint8" or (t.dim() == 1 and tuple(t.shape) != spec.shape)):
        t = t.view(torch_dtype(spec.dtype)).view(spec.shape)
    return check_input(k, t, spec)


def keep_outputs(s: Session, outs: list[Any]) -> list[tuple[int, int, str, tuple[int, ...]]]:
    """Store a launch's outputs in the session: (handle, nbytes, dtype, shape) each."""
    kept = []
    for out in outs:
        t = out if isinstance(out, torch.Tensor) else torch.tensor(out)
        hid = s.new_id()
        s.put(hid, t, "launch output")
        kept.append((hid, t.numel() * t.element_size(), str(t.dtype).removeprefix("torch."), tuple(t.shape)))
    return kept
