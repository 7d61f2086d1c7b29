"""tcmalloc for the service processes: glibc's malloc is a fifth of every small oneDNN call here.

Every oneDNN convolution torch runs allocates and frees its output, a scratchpad and ideep's
descriptors; with glibc's malloc (``_int_free``, ``malloc_consolidate``) that is ~40% of the main
thread's time in a small convolution call on the 2-core VM (perf). gperftools' tcmalloc (the
Debian/Ubuntu package ``libtcmalloc-minimal4``, installed by scripts/bootstrap.sh) halves the per-call
cost of a tiny convolution (38 -> 19 us) and makes the pose models 15-20% faster (bench/RESULTS.md,
"Session 4"); jemalloc gained less, and with its background thread lost on two cores. It has to be in
place before the process starts (``LD_PRELOAD``), so:

    child_env(env) -> dict          ``env`` with tcmalloc preloaded; the supervisor (mirror.launch) and
                                    gvirtus.testing.BackendProcess start every child with it
    reexec_with_tcmalloc()          restart this process with it (benchmarks call this first)
    in_use() -> str                 "tcmalloc" | "glibc" | "unknown": what this process runs on
    find_tcmalloc() -> str | None   the library (a soname the loader finds), if installed

``VM_ALLOCATOR=system`` keeps glibc's malloc (for A/B runs: ``VM_ALLOCATOR=system python bench/...``);
an unknown value is a ConfigError naming it. Without the library everything runs on glibc's malloc,
with one log line saying so. The allocator changes no arithmetic: the pose tests also run with it
(tests/mirror/test_allocator.py: the exact detector lowering and the mediapipe oracle).
"""

from __future__ import annotations

import ctypes.util
import functools
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from mirror.errors import ConfigError

log = logging.getLogger("mirror.allocator")

ALLOCATOR_ENV = "VM_ALLOCATOR"
CHOICES = ("tcmalloc", "system")
TCMALLOC_NAME = "tcmalloc_minimal"  # gperftools' malloc without the heap profiler
_REEXEC_MARK = "VM_ALLOCATOR_REEXEC"  # set on the restarted process: restart at most once


def choice(env: Mapping[str, str] | None = None) -> str:
    """The allocator ``env`` asks for ("tcmalloc" unless VM_ALLOCATOR says "system")."""
    value = (os.environ if env is None else env).get(ALLOCATOR_ENV, "tcmalloc").strip().lower() or "tcmalloc"
    if value not in CHOICES:
        raise ConfigError(f"{ALLOCATOR_ENV} must be one of {CHOICES}, got {value!r}")
    return value


@functools.lru_cache(maxsize=1)
def find_tcmalloc() -> str | None:
    """The tcmalloc library as the dynamic loader names it (e.g. "libtcmalloc_minimal.so.4"), or None."""
    return ctypes.util.find_library(TCMALLOC_NAME)


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``env`` that starts a process on tcmalloc (LD_PRELOAD, ahead of any existing entries).

    Unchanged when VM_ALLOCATOR=system, when tcmalloc is already preloaded, or when it is not installed.
    Raises ConfigError for an unknown VM_ALLOCATOR.
    """
    out = dict(env)
    if choice(out) == "system":
        return out
    preload = out.get("LD_PRELOAD", "")
    if TCMALLOC_NAME in preload:
        return out
    lib = find_tcmalloc()
    if lib is None:
        _warn_missing()
        return out
    out["LD_PRELOAD"] = f"{lib} {preload}".strip()
    return out


@functools.lru_cache(maxsize=1)
def _warn_missing() -> None:
    log.warning("lib%s is not installed (apt package libtcmalloc-minimal4): processes use glibc's malloc, "
                "and the pose and parsing models run ~15%% slower", TCMALLOC_NAME)


def in_use(pid: int | str = "self") -> str:
    """"tcmalloc" if process ``pid`` has it mapped, "glibc" if not, "unknown" where /proc is missing."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "unknown"
    return "tcmalloc" if f"lib{TCMALLOC_NAME}" in maps else "glibc"


def reexec_with_tcmalloc() -> None:
    """Restart this process (same interpreter, flags and arguments) with tcmalloc preloaded.

    Returns at once when it is already in use, not wanted (VM_ALLOCATOR=system), not installed, or when
    this process is itself the restart (the preload did not take: it goes on with glibc's malloc).
    Call it first thing in an entry point: the process image is replaced.
    """
    if in_use() != "glibc" or os.environ.get(_REEXEC_MARK):
        return
    env = child_env(os.environ)
    if env.get("LD_PRELOAD") == os.environ.get("LD_PRELOAD"):
        return
    env[_REEXEC_MARK] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)  # noqa: S606 - this very interpreter and argv
