"""The backend's torch device: choosing it from config, describing it, synchronising it."""

from __future__ import annotations

import logging
import os
import platform
import threading
from pathlib import Path
from typing import Any

import torch

from gvirtus.errors import GvirtusError

log = logging.getLogger("gvirtus.backend")

# CUDA errors after which the process's CUDA context is unusable: every later call on the device fails
# with the same error, so the only cure is a new process (the supervisor restarts the backend).
CONTEXT_LOST_MARKERS = ("device-side assert", "illegal memory access", "unspecified launch failure",
                        "misaligned address", "illegal instruction", "uncorrectable ECC")
CONTEXT_LOST = threading.Event()   # set once such an error was seen; the backend then exits


class DeviceUnavailable(GvirtusError):  # noqa: N818
    """The configured device (gvirtus.device) does not exist on this machine."""


def use_full_float32(device: torch.device) -> None:
    """float32 ops on `device` compute in float32: TF32 off for cuDNN convolutions and CUDA matmuls.

    torch enables TF32 for cuDNN convolutions by default (10-bit mantissa); on an H100 that moved the
    pose model's landmarks by up to 7 px against the CPU and the mediapipe oracle (bench/RESULTS.md,
    GPU session). A remote device must compute what the client asked for, so the backend turns it off.
    Uses the legacy flags, which torch 2.11 and 2.13 both accept without warnings.
    """
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False


def cuda_context_lost(exc: BaseException) -> bool:
    """Whether `exc` is a sticky CUDA error (the context is gone); records it in CONTEXT_LOST."""
    text = str(exc)
    if "CUDA error" not in text or not any(m in text for m in CONTEXT_LOST_MARKERS):
        return False
    if not CONTEXT_LOST.is_set():
        CONTEXT_LOST.set()
        log.critical("the CUDA context is lost (%s); the backend stops so that it can be restarted",
                     text.splitlines()[0])
    return True


def pick_device(setting: str) -> torch.device:
    """`auto` -> cuda:0 when CUDA is available, else cpu; `cpu`, `cuda`, `cuda:N` as given."""
    if setting == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    dev = torch.device("cuda:0" if setting == "cuda" else setting)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"gvirtus.device = {setting!r} but this torch ({torch.__version__}) sees no "
                                    "CUDA device; set gvirtus.device to \"auto\" or \"cpu\"")
        if (dev.index or 0) >= torch.cuda.device_count():
            raise DeviceUnavailable(f"gvirtus.device = {setting!r} but only {torch.cuda.device_count()} "
                                    "CUDA device(s) exist")
    return dev


def _meminfo() -> tuple[int, int]:
    """(total, available) bytes of host memory, from /proc/meminfo."""
    fields: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            fields[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return pages, pages
    return fields.get("MemTotal", 0), fields.get("MemAvailable", fields.get("MemFree", 0))


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_properties(device: torch.device) -> dict[str, Any]:
    """Fields of DeviceProperties: name, device_type, device, total/free memory, capability."""
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        free, total = torch.cuda.mem_get_info(device)
        return {"name": p.name, "device_type": "cuda", "device": str(device), "total_memory": total,
                "free_memory": free, "capability": f"{p.major}.{p.minor}", "torch_version": torch.__version__,
                "multiprocessors": p.multi_processor_count}
    total, free = _meminfo()
    return {"name": f"{_cpu_name()} ({torch.get_num_threads()} torch threads)", "device_type": "cpu",
            "device": "cpu", "total_memory": total, "free_memory": free, "capability": "",
            "torch_version": torch.__version__, "multiprocessors": os.cpu_count() or 1}


def synchronize(device: torch.device) -> None:
    """Wait for every queued kernel on `device` (a no-op on CPU, where ops run synchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
