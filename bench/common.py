"""Shared pieces of the benchmarks: the 768x1024 test photo, percentiles, a plain-text table, the allocator."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WIDTH, HEIGHT = 768, 1024


def service_allocator() -> str:
    """Put this benchmark on the allocator the services run on (mirror.allocator: tcmalloc; the process
    restarts with it preloaded) and return its name for the report. VM_ALLOCATOR=system keeps glibc's."""
    from mirror.allocator import in_use, reexec_with_tcmalloc

    reexec_with_tcmalloc()
    return in_use()


def photo() -> np.ndarray:
    """(1024, 768, 3) uint8 RGB: skimage's astronaut scaled to 768 px wide on a grey canvas."""
    import cv2
    from skimage import data

    person = cv2.resize(data.astronaut(), (WIDTH, WIDTH), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((HEIGHT, WIDTH, 3), 120, np.uint8)
    canvas[HEIGHT - WIDTH:] = person
    return canvas


def pct(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of ALL `samples` by the standard linear interpolation between order
    statistics (numpy.percentile method="linear": Hyndman & Fan type 7, the same as
    statistics.quantiles(method="inclusive")); nan when there are none. p100 is the maximum, p99 of 100
    samples lies between the 99th and the 100th value (not the maximum)."""
    if not len(samples):
        return float("nan")
    return float(np.percentile(np.asarray(samples, np.float64), q, method="linear"))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A readable fixed-width table (numbers formatted to 1 decimal unless already strings)."""
    def fmt(v: object) -> str:
        return f"{v:.1f}" if isinstance(v, float) else str(v)

    cells = [[fmt(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            for r in cells]
    return "\n".join(out)


@contextmanager
def loopback_backend(threads: int, device: str = "cpu") -> Iterator[Any]:
    """A gvirtus backend process on loopback (`threads` torch threads, gvirtus.device = `device`:
    "cpu", "cuda", "cuda:N" or "auto") and a session on it."""
    import gvirtus
    from gvirtus.testing import BackendProcess

    with BackendProcess(torch_threads=threads, device=device) as backend:
        dev = gvirtus.connect(backend.target, token=backend.token)
        try:
            yield dev
        finally:
            dev.close()


def device_options(parser: Any) -> None:
    """The options the pose and preprocess benchmarks share: runs, threads, the loopback gvirtus backend
    (--no-remote, --backend-device), the local GPU column (--gpu) and --json."""
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-remote", action="store_true")
    parser.add_argument("--backend-device", default="cpu", help="gvirtus.device of the loopback backend (cpu, cuda)")
    parser.add_argument("--gpu", default="cuda:0", help="local GPU column's device when CUDA is available; none = skip")
    parser.add_argument("--json", action="store_true")


def gpu_device(choice: str) -> str | None:
    """The local GPU column's device: None when skipped ("none") or when this torch sees no CUDA device."""
    import torch

    if choice == "none" or not torch.cuda.is_available():
        return None
    return choice
