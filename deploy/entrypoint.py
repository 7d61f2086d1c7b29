"""Entrypoint of the three images (under tini): check the mounted configuration, then run the role.

    VM_ROLE=node1|node2|viton   set by each image (deploy/Containerfile)
    VM_CONFIG                   the mounted env_config.json (/etc/virtual-mirror/env_config.json)
    VM_HOST_PROCESSES           service processes sharing this host's CPUs (the launcher and the
                                compose files set it); torch threads = CPUs // it, as the supervisor
                                gives its children on a host (mirror.launch.threads_per_child)

The processes are the supervisor's for the role (mirror.launch.role_specs) less the VITON service,
which has its own container. One process (node1: the web app; viton: the try-on service) runs in
place of this one (exec), so it is the container's main process: a crash ends the container and the
restart policy starts a new one. node2's two (gvirtus backend, gateway) run under the supervisor, in
that order, each waited for, a crashed one restarted; SIGTERM stops both. A missing or invalid
configuration, or a secret file it names that was not mounted, exits with status 2 and one message
naming it.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mirror import allocator  # noqa: E402
from mirror import config as config_mod  # noqa: E402
from mirror.errors import ConfigError, LaunchError  # noqa: E402

if TYPE_CHECKING:
    from mirror.launch import ChildSpec

ROLES = ("node1", "node2", "viton")
FIX_READABLE = ("make the files readable by group 10001 on the host (chgrp -R 10001 DIR && chmod -R g+rX DIR), "
                "or start with start_application.sh --containers, which mounts copies this user owns")
EXIT_CONFIG = 2
EXIT_FAILED = 1


def fail(message: str, code: int = EXIT_CONFIG) -> int:
    print(f"virtual-mirror {os.environ.get('VM_ROLE', '?')}: {message}", file=sys.stderr, flush=True)
    return code


def load_mounted_config() -> config_mod.Config:
    """The validated configuration; ConfigError says what to mount when the file is absent."""
    path = Path(os.environ.get("VM_CONFIG") or config_mod.DEFAULT_CONFIG_PATH)
    if not path.is_file():
        raise ConfigError(f"no configuration at {path}: mount your env_config.json there "
                          f"(-v ./env_config.json:{path}:ro) or set VM_CONFIG to where it is mounted")
    if not os.access(path, os.R_OK):
        raise ConfigError(f"the configuration mounted at {path} is not readable by this container's user "
                          f"(uid {os.getuid()}): {FIX_READABLE}")
    secrets_dir = config_mod.ROOT / "secrets"  # the compose files mount the host's secrets/ here
    if secrets_dir.is_dir() and not os.access(secrets_dir, os.R_OK | os.X_OK):
        raise ConfigError(f"the folder mounted at {secrets_dir} is not readable by this container's user "
                          f"(uid {os.getuid()}): {FIX_READABLE}")
    cfg = config_mod.load(path)
    check_readable(cfg)
    return cfg


def check_readable(cfg: config_mod.Config) -> None:
    """ConfigError naming a mounted secret this container's user cannot read (a host file of mode 600)."""
    uid = os.getuid()
    for section, key in config_mod.FILE_KEYS:
        value = cfg[section].get(key)
        path = cfg.path(value) if value else None
        if path is not None and not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
            raise ConfigError(f"{section}.{key} = {path} is not readable by this container's user (uid {uid}): "
                              f"{FIX_READABLE}")


def set_threads(n_processes: int) -> None:
    """OMP_NUM_THREADS for the services unless the operator set it (see the module docstring)."""
    from mirror.launch import threads_per_child

    try:
        on_host = max(n_processes, int(os.environ.get("VM_HOST_PROCESSES") or n_processes))
    except ValueError:
        on_host = n_processes
    os.environ.setdefault("OMP_NUM_THREADS", str(threads_per_child(on_host)))


def run_single(module: str) -> int:
    set_threads(1)
    env = allocator.child_env(os.environ)  # tcmalloc, as the supervisor starts its children
    os.execvpe(sys.executable, [sys.executable, "-m", module], env)  # noqa: S606 (fixed argv, no shell)
    return EXIT_FAILED  # not reached


def container_specs(cfg: config_mod.Config, role: str) -> list[ChildSpec]:
    """The supervisor's processes of `role` (mirror.launch.role_specs, so a moved module is followed)
    without the VITON service, which runs in its own container; for "viton", that service alone."""
    from mirror.launch import role_specs

    viton = role_specs(cfg, "viton")
    if role == "viton":
        return viton
    return [s for s in role_specs(cfg, role) if s.module != viton[0].module]


def run_supervised(cfg: config_mod.Config, specs: list[ChildSpec]) -> int:
    from mirror import logs
    from mirror.launch import Supervisor

    set_threads(len(specs))
    logs.setup("mirror.launch", node="supervisor")
    sup = Supervisor(cfg, os.environ["VM_ROLE"], specs=specs)
    signal.signal(signal.SIGTERM, lambda *_: sup.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: sup.stopping.set())
    code = 0
    try:
        sup.start_all()
        if not sup.stopping.is_set():
            for child in sup.children:
                print(f"  {child.spec.name:<16} {(child.ready_info or {}).get('listen', '?')}", flush=True)
            sup.watch()
        code = EXIT_FAILED if sup.failed else 0
    except LaunchError as exc:
        code = fail(f"launch error: {exc}", EXIT_FAILED)
    finally:
        sup.stop_all()
    return code


def main() -> int:
    role = os.environ.get("VM_ROLE", "")
    if role not in ROLES:
        return fail(f"VM_ROLE must be one of {', '.join(ROLES)}, got {role!r} (each image sets it)")
    try:
        cfg = load_mounted_config()
        allocator.choice()  # a bad VM_ALLOCATOR stops here, with its message
    except ConfigError as exc:
        return fail(f"config error: {exc}")
    specs = container_specs(cfg, role)
    if len(specs) == 1:
        return run_single(specs[0].module)
    return run_supervised(cfg, specs)


if __name__ == "__main__":
    raise SystemExit(main())
