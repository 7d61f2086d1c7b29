"""glibc allocator settings for the tensor-heavy processes (node 1, the gvirtus backend, node 2, VITON).

Every try-on allocates and frees tensors of a few MB (a 768x1024 photo as float32 is 9.4 MB; the parsing
step's (12, 256, 192) distance planes are 2.4 MB each, ~14 alive at once). glibc's defaults hand such
memory back to the kernel as soon as it is freed: chunks above the adaptive mmap threshold are munmap'ed,
and the heap is trimmed whenever more than twice that threshold is free at its top. The next request
then faults every page in again, and on the 2-core Firecracker VM a page fault is expensive: the
parsing step's segment distances took 3.0 ms instead of 0.6, the whole parsing step 14-16 ms instead of
11 (bench/RESULTS.md, "Session 3").

``keep_freed_memory()`` raises both thresholds once at process start (mallopt: M_MMAP_THRESHOLD,
M_TRIM_THRESHOLD), so freed tensors go back to the process's own heap and are reused. The cost: a
process keeps up to TRIM_THRESHOLD_BYTES of freed memory instead of returning it, and allocations below
MMAP_THRESHOLD_BYTES come from the heap. Off glibc (or with ``VM_GLIBC_DEFAULTS=1`` in the environment)
it does nothing and says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("mirror.memory")

MMAP_THRESHOLD_BYTES = 256 << 20   # allocations below this come from the heap, not from fresh mappings
TRIM_THRESHOLD_BYTES = 256 << 20   # free memory the heap keeps at its top before giving it back
OPT_OUT_ENV = "VM_GLIBC_DEFAULTS"  # "1": leave glibc's defaults (e.g. to compare memory use)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameter numbers (malloc.h)


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (see the module docstring); returns whether it was applied."""
    if os.environ.get(OPT_OUT_ENV) == "1":
        log.info("allocator: glibc defaults kept (%s=1)", OPT_OUT_ENV)
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = getattr(libc, "mallopt", None)
    except OSError:
        mallopt = None
    if mallopt is None:
        log.info("allocator: no glibc mallopt here; allocator defaults kept")
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD,
                                                                                 TRIM_THRESHOLD_BYTES))
    if ok:
        log.debug("allocator: mmap threshold %d MB, trim threshold %d MB", MMAP_THRESHOLD_BYTES >> 20,
                  TRIM_THRESHOLD_BYTES >> 20)
    else:
        log.warning("allocator: mallopt refused the thresholds; glibc defaults kept")
    return ok
