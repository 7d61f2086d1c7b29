"""`python -m gvirtus.backend`: node 2's remote-device server.

Reads env_config (node2.bind_host or node2.host, node2.gvirtus_port, gvirtus.*), owns one torch
device (gvirtus.device: auto -> cuda:0 if available, else cpu; float32 computed without TF32), serves
sessions over gRPC (TLS when gvirtus.secure), reports ready to the supervisor and stops on SIGTERM /
SIGINT, or with exit status 3 when a sticky CUDA error (device-side assert) lost its CUDA context.

    python -m gvirtus.backend [--session-timeout-s 10] [--port N]
"""

from __future__ import annotations

import argparse
import logging
import os

import torch

from gvirtus.dataserver import DataServer
from gvirtus.device import CONTEXT_LOST, DeviceUnavailable, pick_device, use_full_float32
from gvirtus.errors import GvirtusError
from gvirtus.protocol import MIB, REAPER_INTERVAL_S, SESSION_TIMEOUT_S
from gvirtus.server import build_server
from gvirtus.sessions import SessionStore
from mirror import ConfigError, load_config, notify_ready, setup_logging
from mirror.allocator import OMP_POLICY_ENVS, OMP_SPIN_COUNT, OMP_SPIN_ENV
from mirror.lifecycle import install_stop_handlers

STOP_GRACE_S = 2.0
EXIT_CONFIG = 2
EXIT_BIND = 1
EXIT_CONTEXT_LOST = 3   # a sticky CUDA error: exit so that the supervisor starts a fresh process
WATCH_INTERVAL_S = 0.2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m gvirtus.backend", description=__doc__.splitlines()[0])
    p.add_argument("--session-timeout-s", type=float, default=SESSION_TIMEOUT_S,
                   help="free a session after this long without a call or heartbeat (default %(default)s)")
    p.add_argument("--port", type=int, default=None, help="override node2.gvirtus_port")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = setup_logging("gvirtus.backend", node=os.environ.get("VM_NODE") or "node2")   # it runs on node 2
    try:
        cfg = load_config()
        gv = cfg["gvirtus"]
        device = pick_device(gv["device"])
        use_full_float32(device)
        token = cfg.secret("gvirtus", "token_file", "VM_GVIRTUS_TOKEN")
        tls = None
        if gv["secure"]:
            tls = (cfg.path(gv["tls_key_file"]).read_bytes(), cfg.path(gv["tls_cert_file"]).read_bytes())
    except (ConfigError, DeviceUnavailable, OSError) as exc:
        log.error("cannot start: %s", exc)
        return EXIT_CONFIG
    if device.type == "cpu" and not any(k in os.environ for k in OMP_POLICY_ENVS):
        log.warning("%s is not set: after every graph this backend's OpenMP workers spin on a core for libgomp's "
                    "default 300000 iterations (~8 ms on the 2-core VM), taking it from the processes beside it; "
                    "start the backend through mirror.launch, or with %s=%d",
                    OMP_SPIN_ENV, OMP_SPIN_ENV, OMP_SPIN_COUNT)
    if token is None:
        log.warning("no gvirtus token configured (gvirtus.token_file / VM_GVIRTUS_TOKEN): any client is accepted")
    bind = cfg["node2"].get("bind_host") or cfg["node2"]["host"]
    port = args.port if args.port is not None else cfg["node2"]["gvirtus_port"]
    max_bytes = int(gv["max_message_mb"]) * MIB
    store = SessionStore(int(gv["session_quota_mb"]) * MIB, args.session_timeout_s)
    try:
        data = DataServer(store, device, bind, tls, port=int(cfg["node2"]["gvirtus_data_port"]))
    except OSError as exc:
        log.error("cannot open the bulk-copy data channel on %s: %s", bind, exc)
        return EXIT_BIND
    try:
        server, port = build_server(store, device, token=token, bind=bind, port=port, max_message_bytes=max_bytes,
                                    tls=tls, data_port=data.port)
    except GvirtusError as exc:
        data.stop()
        log.error("cannot start: %s", exc)
        return EXIT_BIND
    stop = install_stop_handlers()
    server.start()
    data.start()
    store.run_reaper(stop, REAPER_INTERVAL_S)
    listen = f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"
    kind = "CUDA" if device.type == "cuda" else f"CPU, no CUDA device in use ({torch.get_num_threads()} threads)"
    log.info("serving on %s (%s, device %s: %s), bulk copies on port %d, quota %d MB per session, "
             "max message %d MB, session timeout %.1f s", listen, "TLS" if tls else "plaintext", device, kind,
             data.port, gv["session_quota_mb"], gv["max_message_mb"], args.session_timeout_s)
    notify_ready("gvirtus.backend", listen=listen, device=str(device))
    while not stop.wait(WATCH_INTERVAL_S) and not CONTEXT_LOST.is_set():
        pass
    data.stop()
    server.stop(grace=STOP_GRACE_S).wait()
    try:
        store.close_all()
    except Exception as exc:  # noqa: BLE001 - freeing on a lost CUDA context may fail; the process ends anyway
        log.warning("freeing the sessions failed: %s", exc)
    if CONTEXT_LOST.is_set():
        log.error("stopped: the CUDA context was lost; exit status %d (the supervisor restarts the backend)",
                  EXIT_CONTEXT_LOST)
        return EXIT_CONTEXT_LOST
    logging.getLogger("gvirtus.backend").info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
