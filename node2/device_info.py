"""Node 2's device for /health: GPU name, memory, temperature, and gvirtus sessions.

The gateway opens one gvirtus session of its own (node 2 holds the token) and asks the backend
for its device properties and counters; temperature comes from `nvidia-smi` when it exists.
Answers are cached for CACHE_S so /health stays cheap; a backend that is down is reported,
never raised.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("node2.device_info")

CACHE_S = 5.0
NVIDIA_SMI_TIMEOUT_S = 2.0
GVIRTUS_TIMEOUT_S = 2.0
MIB = 2**20


def nvidia_smi() -> list[dict[str, Any]]:
    """One dict per NVIDIA GPU (name, memory_used_mb, memory_total_mb, temperature_c); [] without one."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.used,memory.total,temperature.gpu",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=NVIDIA_SMI_TIMEOUT_S, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("nvidia-smi failed: %s", exc)
        return []
    gpus = []
    for line in out.strip().splitlines():
        name, used, total, temp = (x.strip() for x in line.split(","))
        gpus.append({"name": name, "memory_used_mb": _num(used), "memory_total_mb": _num(total),
                     "temperature_c": _num(temp)})
    return gpus


def _num(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


class DeviceInfo:
    """Cached `info()` -> {"gpu": {...} | None, "gvirtus": {...}} for the gateway's /health."""

    def __init__(self, connect: Callable[[], Any] | None, clock: Callable[[], float] = time.monotonic) -> None:
        self._connect = connect
        self._clock = clock
        self._dev: Any = None
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None

    def info(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            if self._cached is None or now - self._cached[0] >= CACHE_S:
                self._cached = (now, self._probe())
            return self._cached[1]

    def _probe(self) -> dict[str, Any]:
        gvirtus: dict[str, Any] = {"reachable": False}
        gpu: dict[str, Any] | None = None
        try:
            if self._dev is None and self._connect is not None:
                self._dev = self._connect()
            if self._dev is not None:
                props, stats = self._dev.properties(), self._dev.stats()
                total, free = int(props.get("total_memory", 0)), int(props.get("free_memory", 0))
                gvirtus = {"reachable": True, "device": props.get("device"), "sessions": stats.get("sessions"),
                           "modules": stats.get("modules"), "session_bytes": stats.get("session_bytes")}
                gpu = {"name": props.get("name"), "device_type": props.get("device_type"),
                       "memory_used_mb": round((total - free) / MIB), "memory_total_mb": round(total / MIB),
                       "temperature_c": None}
        except Exception as exc:  # noqa: BLE001 - health reports whatever went wrong
            gvirtus["error"] = f"{type(exc).__name__}: {exc}"
            self._close()
        smi = nvidia_smi()
        if smi:
            gpu = {**(gpu or {}), **smi[0]}
        return {"gpu": gpu, "gvirtus": gvirtus}

    def _close(self) -> None:
        dev, self._dev = self._dev, None
        if dev is not None:
            try:
                dev.close()
            except Exception:  # noqa: BLE001 - a broken session is closed best effort
                log.debug("closing the health session failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._close()


def gvirtus_connector(cfg: Any) -> Callable[[], Any]:
    def connect() -> Any:
        import gvirtus

        return gvirtus.connect_from_config(cfg, client_name="node2.health", timeout_s=GVIRTUS_TIMEOUT_S)

    return connect
