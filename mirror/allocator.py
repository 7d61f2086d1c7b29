"""The runtime of the service processes: tcmalloc, and OpenMP workers that stop spinning when idle.

tcmalloc: glibc's malloc is a fifth of every small oneDNN call here. Every oneDNN convolution torch runs
allocates and frees its output, a scratchpad and ideep's descriptors; with glibc's malloc (``_int_free``,
``malloc_consolidate``) that is ~40% of the main thread's time in a small convolution call on the 2-core
VM (perf). gperftools' tcmalloc (the Debian/Ubuntu package ``libtcmalloc-minimal4``, installed by
scripts/bootstrap.sh) halves the per-call cost of a tiny convolution (38 -> 19 us) and makes the pose
models 15-20% faster (bench/RESULTS.md, "Session 4"); jemalloc gained less, and with its background
thread lost on two cores.

OpenMP: torch's libgomp keeps each worker thread busy-waiting after every parallel region, for
GOMP_SPINCOUNT iterations (default 300000: ~8 ms of a core on the VM's AMD EPYC, whose PAUSE is slow)
before it sleeps. A process that ran one parallel op keeps a core busy for 8 ms doing nothing; on a
machine whose processes share few cores (the LOCAL deployment, node 2's backend next to its gateway
and the VITON service) that core is taken from the process doing the next piece of work. It is why a
gvirtus graph took 15-21 ms instead of 11 when the client had just zero-filled a 2.4 MB example tensor
(bench/RESULTS.md, "the kept photo"). ``OMP_SPIN_COUNT`` iterations still cover the gaps between the ops
of one graph, and a worker idle longer than that sleeps.

Both have to be in place before the process starts (``LD_PRELOAD``; libgomp reads its environment when
torch loads it), so:

    child_env(env) -> dict          ``env`` with tcmalloc preloaded and GOMP_SPINCOUNT set; the supervisor
                                    (mirror.launch) and gvirtus.testing.BackendProcess start every child with it
    reexec_with_tcmalloc()          restart this process with that runtime (benchmarks call this first)
    in_use() -> str                 "tcmalloc" | "glibc" | "unknown": what this process runs on
    find_tcmalloc() -> str | None   the library (a soname the loader finds), if installed

``VM_ALLOCATOR=system`` keeps glibc's malloc (for A/B runs: ``VM_ALLOCATOR=system python bench/...``);
an unknown value is a ConfigError naming it. Without the library everything runs on glibc's malloc,
with one log line saying so. A GOMP_SPINCOUNT or OMP_WAIT_POLICY already in the environment is kept.
Neither changes any arithmetic: the pose tests also run with them (tests/mirror/test_allocator.py: the
exact detector lowering and the mediapipe oracle).
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
OMP_SPIN_ENV = "GOMP_SPINCOUNT"
OMP_SPIN_COUNT = 10000  # iterations an idle libgomp worker spins before sleeping (~0.3 ms here; default 300000)
OMP_POLICY_ENVS = (OMP_SPIN_ENV, "OMP_WAIT_POLICY")  # either one set by the operator wins


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
    """A copy of ``env`` that starts a process on tcmalloc (LD_PRELOAD, ahead of any existing entries) with
    OpenMP workers that sleep when idle (GOMP_SPINCOUNT = OMP_SPIN_COUNT unless the spin is set already).

    tcmalloc is not added when VM_ALLOCATOR=system, when it is already preloaded, or when it is not installed.
    Raises ConfigError for an unknown VM_ALLOCATOR.
    """
    out = dict(env)
    if not any(k in out for k in OMP_POLICY_ENVS):
        out[OMP_SPIN_ENV] = str(OMP_SPIN_COUNT)
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
    """Restart this process (same interpreter, flags and arguments) on the services' runtime (child_env).

    Returns at once when it already runs on it (or tcmalloc is not wanted / not installed and the OpenMP
    spin is set), or when this process is itself the restart (what did not take stays as it is).
    Call it first thing in an entry point: the process image is replaced.
    """
    if os.environ.get(_REEXEC_MARK):
        return
    env = child_env(os.environ)
    if in_use() != "glibc":
        env.pop("LD_PRELOAD", None)
        if "LD_PRELOAD" in os.environ:
            env["LD_PRELOAD"] = os.environ["LD_PRELOAD"]
    if env == dict(os.environ):
        return
    env[_REEXEC_MARK] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)  # noqa: S606 - this very interpreter and argv
