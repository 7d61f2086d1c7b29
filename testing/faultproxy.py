"""A fault-injecting TCP proxy: delay, loss, cuts, resets and bandwidth limits on one link.

This kernel has no netem, so faults between node 1 and node 2 are injected in user space: the
proxy listens on one address and forwards every connection to a target, byte for byte, through
an asyncio event loop on its own thread. Controls take effect at once, from any thread:

    with FaultProxy(("127.0.0.1", gateway_port)) as proxy:     # listens on 127.0.0.1:<free port>
        connect node 1 to proxy.port ...
        proxy.set(delay_s=0.05, jitter_s=0.01)   # one-way delay per chunk, each direction
        proxy.set(loss=0.02)                     # 2 % of chunks "lost" (see below)
        proxy.set(bandwidth_bps=10e6)            # 10 MB/s per direction, shared by all connections
        proxy.cut()                              # link down: nothing moves, nothing is closed
        proxy.restore()                          # link up: held bytes flow again
        proxy.reset_connections()                # every open connection gets a TCP RST (both sides)
        proxy.set(refuse=True)                   # new connections are reset at once
        proxy.stats()                            # counters (ProxyStats)

Fault model (what a stream socket can see of a faulty network):
    delay / jitter  each chunk read from one side is written to the other `delay_s` (+ uniform
                    [0, jitter_s]) later; order is kept (a chunk never overtakes an earlier one).
    loss            TCP retransmits lost segments, so the application sees loss as head-of-line
                    stalls: a "lost" chunk is delivered `rto_s` (default LOSS_RTO_S) late, and
                    the chunks behind it wait too. Bytes are never dropped silently.
    cut             like a pulled cable: no FIN, no RST; bytes wait in the proxy (bounded by
                    faultlink.QUEUE_CHUNKS per direction, then the proxy stops reading, so the sender's TCP
                    window fills). Liveness checks (zmq / gRPC heartbeats) are what notice it.
    reset / refuse  like a crashed peer or a firewall's reject: SO_LINGER 0 then close = RST.
    bandwidth       a token bucket per direction (all connections share the link).

`python -m testing.faultproxy --listen 127.0.0.1:9655 --target 127.0.0.1:9555 --delay-ms 20` runs
one from the command line (Ctrl-C stops it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import random
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from mirror.errors import MirrorError
from testing.faultlink import CHUNK_BYTES, DOWN, UP, Link, reset_socket

BANDWIDTH_BURST_S = 0.002       # bandwidth limit: bucket size, in seconds of line rate
LOSS_RTO_S = 0.2                 # a "lost" chunk arrives this much later (Linux's minimum TCP RTO)
CONNECT_TIMEOUT_S = 5.0          # proxy -> target connect
START_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 5.0

log = logging.getLogger("testing.faultproxy")


class ProxyError(MirrorError):
    """The proxy could not start (address in use, bad setting)."""


@dataclass(frozen=True)
class Faults:
    """The link's current faults (replaced as a whole by `FaultProxy.set`)."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    loss: float = 0.0
    rto_s: float = LOSS_RTO_S
    bandwidth_bps: float | None = None
    refuse: bool = False

    def check(self) -> Faults:
        if self.delay_s < 0 or self.jitter_s < 0 or self.rto_s < 0:
            raise ProxyError(f"delay_s, jitter_s and rto_s must be >= 0, got {self.delay_s}, {self.jitter_s}, "
                             f"{self.rto_s}")
        if not 0.0 <= self.loss <= 1.0:
            raise ProxyError(f"loss is a fraction of chunks in [0, 1], got {self.loss}")
        if self.bandwidth_bps is not None and self.bandwidth_bps <= 0:
            raise ProxyError(f"bandwidth_bps must be > 0 bytes/s or None (unlimited), got {self.bandwidth_bps}")
        return self


@dataclass
class ProxyStats:
    accepted: int = 0            # client connections accepted
    active: int = 0              # connections open now
    refused: int = 0             # reset at once (refuse=True, or the target was unreachable)
    resets: int = 0              # connections reset by reset_connections()
    bytes_up: int = 0            # forwarded client -> target
    bytes_down: int = 0          # forwarded target -> client
    chunks_lost: int = 0         # chunks that took the loss penalty


class FaultProxy:
    """A TCP proxy to `target` ("host", port) with controllable faults (see the module docstring).

    Args:
        target: where connections are forwarded.
        listen: the proxy's own address; port 0 picks a free one (read it from `.port`).
        seed: seeds the loss/jitter random generator (repeatable runs).
    """

    def __init__(self, target: tuple[str, int], listen: tuple[str, int] = ("127.0.0.1", 0), *,
                 seed: int | None = None, name: str = "faultproxy") -> None:
        self.target = target
        self.listen = listen
        self.name = name
        self.rng = random.Random(seed)
        self.faults = Faults()
        self.counters = ProxyStats()
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._links: set[Link] = set()
        self._bw_free_at: dict[str, float] = {UP: 0.0, DOWN: 0.0}
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self.link_up: asyncio.Event  # created on the proxy's loop

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name=f"{self.name} {self.listen}", daemon=True)
        self._thread.start()
        if not self._started.wait(START_TIMEOUT_S):
            raise ProxyError(f"{self.name} did not start within {START_TIMEOUT_S} s")
        if self._start_error is not None:
            raise ProxyError(f"{self.name} cannot listen on {self.listen[0]}:{self.listen[1]}: "
                             f"{self._start_error}") from self._start_error
        return self

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._open())
        except OSError as exc:
            self._start_error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _open(self) -> None:
        self.link_up = asyncio.Event()
        self.link_up.set()
        self._server = await asyncio.start_server(self._accept, self.listen[0], self.listen[1],
                                                  reuse_address=True, limit=CHUNK_BYTES)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.reset()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(STOP_TIMEOUT_S)
        self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> str:
        return f"{self.listen[0]}:{self.port}"

    # -- controls (any thread) ---------------------------------------------------------------
    def set(self, **changes: float | bool | None) -> Faults:
        """Change some faults (delay_s, jitter_s, loss, rto_s, bandwidth_bps, refuse); returns the new set."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(Faults)}
        if unknown:
            raise ProxyError(f"unknown fault(s) {sorted(unknown)}; use {[f.name for f in dataclasses.fields(Faults)]}")
        self.faults = dataclasses.replace(self.faults, **changes).check()  # type: ignore[arg-type]
        return self.faults

    def clear(self) -> None:
        """No faults: no delay, loss or limit, link up, connections accepted."""
        self.faults = Faults()
        self.restore()

    def cut(self) -> None:
        """Link down: stop moving bytes, keep every connection open (no FIN, no RST)."""
        self._call(self.link_up.clear)

    def restore(self) -> None:
        self._call(self.link_up.set)

    def reset_connections(self) -> int:
        """Reset (RST) every open connection, both sides; returns how many."""
        done: list[int] = []

        def do() -> None:
            links = list(self._links)
            for link in links:
                link.reset()
            self.counters.resets += len(links)
            done.append(len(links))

        self._call(do)
        return done[0] if done else 0

    def stats(self) -> ProxyStats:
        return dataclasses.replace(self.counters, active=len(self._links))

    def _call(self, fn: Callable[[], object]) -> None:
        """Run fn on the proxy's loop and wait for it."""
        if self._loop is None or not self._loop.is_running():
            raise ProxyError(f"{self.name} is not running")
        fut = asyncio.run_coroutine_threadsafe(self._invoke(fn), self._loop)
        fut.result(STOP_TIMEOUT_S)

    @staticmethod
    async def _invoke(fn: Callable[[], object]) -> None:
        fn()

    # -- the loop's side ---------------------------------------------------------------------
    async def throttle(self, direction: str, nbytes: int) -> None:
        bps = self.faults.bandwidth_bps
        if not bps:
            return
        # A token bucket holding BANDWIDTH_BURST_S of line rate: a sleep that overshoots (timer and
        # event-loop latency) is paid back by the next chunks instead of slowing the link for good.
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now - BANDWIDTH_BURST_S, self._bw_free_at[direction])
        self._bw_free_at[direction] = start + nbytes / bps
        if self._bw_free_at[direction] > now:
            await asyncio.sleep(self._bw_free_at[direction] - now)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.accepted += 1
        if self.faults.refuse:
            self.counters.refused += 1
            reset_socket(writer)
            return
        try:
            target = await asyncio.wait_for(asyncio.open_connection(*self.target, limit=CHUNK_BYTES),
                                            CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            log.info("%s: target %s:%d unreachable (%s); resetting the client", self.name, *self.target, exc)
            self.counters.refused += 1
            reset_socket(writer)
            return
        for _, w in ((reader, writer), target):
            sock = w.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = Link(self, (reader, writer), target)
        self._links.add(link)
        try:
            await link.run()
        finally:
            self._links.discard(link)


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected host:port, got {text!r}")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m testing.faultproxy", description=__doc__.splitlines()[0])
    p.add_argument("--listen", type=_hostport, required=True, help="host:port to listen on")
    p.add_argument("--target", type=_hostport, required=True, help="host:port to forward to")
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--loss", type=float, default=0.0, help="fraction of chunks delayed by one RTO")
    p.add_argument("--bandwidth-mbps", type=float, default=None, help="MB/s per direction")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    proxy = FaultProxy(args.target, args.listen)
    try:
        proxy.start()
        proxy.set(delay_s=args.delay_ms / 1000, jitter_s=args.jitter_ms / 1000, loss=args.loss,
                  bandwidth_bps=args.bandwidth_mbps * 1e6 if args.bandwidth_mbps else None)
    except ProxyError as exc:
        print(f"faultproxy: {exc}", file=sys.stderr)
        return 2
    print(f"forwarding {proxy.address} -> {args.target[0]}:{args.target[1]} with {proxy.faults}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
