"""Entry point of node 1's web app: gunicorn (gthread) over TLS 1.2+, started programmatically.

    python -m node1.web            (what mirror.launch / start_application.sh runs)

Serving model: `node1.web_processes` gunicorn worker processes (default ONE) with HTTP_THREADS
threads each. With `node1.store: "memory"` shoppers' jobs, results and progress live in the one
process's memory (nothing on disk), so only one process is allowed (mirror.config); with
`"redis"` they live in Redis and any worker answers any request (node1.web.redisstore).
Prometheus metrics are per process (no multiprocess mode). Try-ons themselves run on `node1.workers`
runner threads (node1.web.jobs), the heavy work releasing the GIL (torch, zmq, node 2).

Readiness: gunicorn's when_ready hook (in the arbiter) waits until the worker has built the app
(runner + catalog loaded; the worker reports through a pipe from post_worker_init) and then
calls mirror.notify_ready("node1.web", listen=..., url=...). SIGTERM stops gracefully.

Slow clients: every TLS connection's reads and writes time out after CLIENT_IO_TIMEOUT_S without
progress (bounded_ssl_socket_class), so a client that stops sending (slow-loris headers or body)
or stops reading frees its thread; idle connections wait in gthread's poller, not in a thread;
header size and count are capped (LIMIT_REQUEST_*), the body by MAX_CONTENT_LENGTH.

The runner comes from RUNNER_FACTORY ("module:function", override with $VM_RUNNER_FACTORY):
a function taking the Config and returning (TryOnRunner, GarmentCatalog).
"""

from __future__ import annotations

import importlib
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from mirror import Config, ConfigError, load_config, notify_ready, setup_logging
from node1.tryon import GarmentCatalog, TryOnRunner
from node1.web.tls import ensure_certificate, server_ssl_context
from node1.web.worker import JsonErrorThreadWorker

COMPONENT = "node1.web"
RUNNER_FACTORY_ENV = "VM_RUNNER_FACTORY"
RUNNER_FACTORY = "node1.tryon.distributed:build_distributed"
IO_TIMEOUT_ENV = "VM_WEB_IO_TIMEOUT_S"

HTTP_THREADS = 16              # concurrent HTTP requests (an open SSE stream holds one)
WORKER_CONNECTIONS = 256       # open connections per worker, kept-alive ones included
KEEPALIVE_S = 5                # idle keep-alive connections are closed after this
CLIENT_IO_TIMEOUT_S = 10.0    # a socket read/write making no progress this long is abandoned
MIN_CLIENT_RATE_BPS = 8192    # a request arriving slower than this on average (after the grace) is dropped
MIN_RATE_GRACE_S = 5.0
WORKER_TIMEOUT_S = 30          # arbiter kills a worker whose main loop stalls this long
BOOT_TIMEOUT_S = 170           # building the app (models, catalog) may take this long (supervisor: 180 s)
BOOT_HEARTBEAT_S = 1.0
GRACEFUL_TIMEOUT_S = 5         # on SIGTERM, in-flight requests get this long (supervisor waits 10 s)
LIMIT_REQUEST_LINE = 4094      # bytes in "GET /path HTTP/1.1"
LIMIT_REQUEST_FIELDS = 50      # header count
LIMIT_REQUEST_FIELD_SIZE = 8190

log = logging.getLogger(COMPONENT)
RunnerFactory = Callable[[Config], tuple[TryOnRunner, GarmentCatalog]]


def load_factory(spec: str) -> RunnerFactory:
    """Import "module:function"."""
    module_name, sep, func_name = spec.partition(":")
    if not sep or not module_name or not func_name:
        raise ConfigError(f"runner factory {spec!r} is malformed; use 'module:function'")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load the runner factory {spec!r}: {exc}; set ${RUNNER_FACTORY_ENV} "
                          "to 'module:function' returning (TryOnRunner, GarmentCatalog)") from exc
    if not callable(func):
        raise ConfigError(f"runner factory {spec!r} is not callable")
    return func


def build_app(cfg: Config, factory: RunnerFactory) -> Flask:
    from node1.web import create_app

    runner, catalog = factory(cfg)
    return create_app(cfg, runner=runner, catalog=catalog)


class WebServer(BaseApplication):
    """gunicorn, configured in code (no gunicorn.conf.py, no command line)."""

    def __init__(self, load_app: Callable[[], Flask], options: dict[str, Any]) -> None:
        self._load_app = load_app
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self._load_app()


def bounded_ssl_socket_class(io_timeout_s: float) -> type[ssl.SSLSocket]:
    """An SSLSocket whose "blocking" mode always has a timeout.

    gthread puts a connection in blocking mode (`setblocking(True)`, i.e. no timeout) before
    the TLS handshake and before reading each request, so a client that sends half a request
    and stalls (slow-loris) would hold a thread forever. This class turns "block forever" into
    "block at most io_timeout_s per read/write"; the stalled read raises TimeoutError and gunicorn
    closes the connection. (SO_RCVTIMEO does not work here: the ssl module retries on EAGAIN.)
    After shutdown() it never blocks at all (see below).
    """

    class BoundedIOSSLSocket(ssl.SSLSocket):
        _closing = False
        _rx_t0: float | None = None  # when this request's first bytes arrived
        _rx_n = 0

        def _count_rx(self, n: int) -> None:
            # A trickle (1 byte/s) makes progress, so the per-read timeout never fires; cap the
            # rate too: after MIN_RATE_GRACE_S a request must average MIN_CLIENT_RATE_BPS.
            now = time.monotonic()
            if self._rx_t0 is None:
                self._rx_t0, self._rx_n = now, 0
            self._rx_n += n
            elapsed = now - self._rx_t0
            if elapsed > MIN_RATE_GRACE_S and self._rx_n < MIN_CLIENT_RATE_BPS * elapsed:
                raise TimeoutError(f"client sent {self._rx_n} bytes in {elapsed:.1f} s, "
                                   f"under {MIN_CLIENT_RATE_BPS} B/s")

        def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
            data = super().recv(buflen, flags)
            self._count_rx(len(data))
            return data

        def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
            n = super().recv_into(buffer, nbytes, flags)
            self._count_rx(n)
            return n

        def sendall(self, data: Any, flags: int = 0) -> None:
            self._rx_t0 = None  # a response means the request was read: the next one starts afresh
            super().sendall(data, flags)

        def settimeout(self, value: float | None) -> None:
            if self._closing:
                value = 0.0
            super().settimeout(io_timeout_s if value is None else value)

        def setblocking(self, flag: bool) -> None:
            self.settimeout(None if flag else 0.0)

        def shutdown(self, how: int) -> None:
            # gunicorn's graceful close (in the worker's MAIN thread) lingers up to 2 s reading
            # until the peer closes; a stalled peer never does, so N of them would stall the main
            # loop 2N s. Once shut down, only drain what is already buffered: never block.
            self._closing = True
            super().shutdown(how)

    return BoundedIOSSLSocket


class _QuietTimeouts(logging.Filter):
    """gunicorn logs a traceback for every socket error; a client timing out is routine."""

    def __init__(self, io_timeout_s: float) -> None:
        super().__init__()
        self.io_timeout_s = io_timeout_s

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, TimeoutError):
            record.msg, record.args, record.exc_info, record.levelno, record.levelname = (
                "closed a connection that made no progress for %.0f s (slow or stalled client)",
                (self.io_timeout_s,), None, logging.INFO, "INFO")
        return True


class MirrorLogger(GunicornLogger):
    """gunicorn's own messages in the project's one log format: its handlers removed, records go to root."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for lg in (self.error_log, self.access_log):
            for handler in list(lg.handlers):
                lg.removeHandler(handler)
            lg.propagate = True


def gunicorn_options(cfg: Config, cert: Path, key: Path, *, io_timeout_s: float = CLIENT_IO_TIMEOUT_S,
                     on_ready: Callable[[], None] | None = None) -> dict[str, Any]:
    """Every gunicorn setting node 1 uses, with its hooks."""
    host, port = cfg["node1"]["host"], int(cfg["node1"]["https_port"])
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    ready_r, ready_w = os.pipe()
    ctx_cache: dict[str, ssl.SSLContext] = {}

    def ssl_context(_conf: Any, _default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        # gunicorn asks per connection; build once per process (also keeps session resumption).
        if "ctx" not in ctx_cache:
            ctx = server_ssl_context(cert, key)
            ctx.sslsocket_class = bounded_ssl_socket_class(io_timeout_s)
            ctx_cache["ctx"] = ctx
        return ctx_cache["ctx"]

    def when_ready(_arbiter: Any) -> None:
        def wait_for_worker() -> None:
            try:
                if os.read(ready_r, 1):
                    notify_ready(COMPONENT, listen=f"{host}:{port}", url=f"https://{bind}/")
                    if on_ready is not None:
                        on_ready()
            finally:
                os.close(ready_r)

        threading.Thread(target=wait_for_worker, name="ready-wait", daemon=True).start()

    booted = threading.Event()

    def post_fork(_arbiter: Any, worker: Any) -> None:
        # The arbiter kills a worker silent for WORKER_TIMEOUT_S; loading models may take longer.
        def heartbeat() -> None:
            deadline = time.monotonic() + BOOT_TIMEOUT_S
            while not booted.wait(BOOT_HEARTBEAT_S) and time.monotonic() < deadline:
                worker.notify()

        threading.Thread(target=heartbeat, name="boot-heartbeat", daemon=True).start()

    def post_worker_init(_worker: Any) -> None:
        booted.set()
        logging.getLogger("gunicorn.error").addFilter(_QuietTimeouts(io_timeout_s))
        try:
            os.write(ready_w, b"1")
        except OSError:
            pass

    def worker_exit(_server: Any, worker: Any) -> None:
        app = getattr(worker, "wsgi", None)
        if isinstance(app, Flask):
            from node1.web import state_of

            state_of(app).jobs.shutdown()

    return {
        "bind": [bind], "workers": int(cfg["node1"].get("web_processes", 1)), "worker_class": JsonErrorThreadWorker,
        "threads": HTTP_THREADS,
        "worker_connections": WORKER_CONNECTIONS, "keepalive": KEEPALIVE_S, "timeout": WORKER_TIMEOUT_S,
        "graceful_timeout": GRACEFUL_TIMEOUT_S, "limit_request_line": LIMIT_REQUEST_LINE,
        "limit_request_fields": LIMIT_REQUEST_FIELDS, "limit_request_field_size": LIMIT_REQUEST_FIELD_SIZE,
        "certfile": str(cert), "keyfile": str(key), "ssl_context": ssl_context,
        "preload_app": False, "control_socket_disable": True, "accesslog": None, "errorlog": "-",
        "loglevel": os.environ.get("VM_LOG_LEVEL", "info").lower(), "proc_name": COMPONENT,
        "forwarded_allow_ips": "",
        "logger_class": MirrorLogger,
        "when_ready": when_ready, "post_fork": post_fork, "post_worker_init": post_worker_init,
        "worker_exit": worker_exit,
    }


def serve(cfg: Config, factory_spec: str | None = None, *, io_timeout_s: float = CLIENT_IO_TIMEOUT_S) -> None:
    """Serve until SIGTERM/SIGINT (gunicorn exits the process)."""
    spec = factory_spec or os.environ.get(RUNNER_FACTORY_ENV) or RUNNER_FACTORY
    factory = load_factory(spec)
    cert, key = ensure_certificate(cfg)
    server_ssl_context(cert, key)  # fail here, in the arbiter, on a bad certificate
    options = gunicorn_options(cfg, cert, key, io_timeout_s=io_timeout_s)
    log.info("serving https on %s (runner %s)", options["bind"][0], spec)
    WebServer(lambda: build_app(cfg, factory), options).run()


def main() -> int:
    setup_logging(COMPONENT)
    try:
        cfg = load_config()
        # $VM_WEB_IO_TIMEOUT_S: tests shorten the slow-client timeout (default CLIENT_IO_TIMEOUT_S).
        serve(cfg, io_timeout_s=float(os.environ.get(IO_TIMEOUT_ENV) or CLIENT_IO_TIMEOUT_S))
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
