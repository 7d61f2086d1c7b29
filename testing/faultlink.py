"""One connection through testing.faultproxy: two pumps (client -> target "up", target -> client "down"),
each reading chunks and writing them after the proxy's current faults (delay, jitter, loss, cut,
bandwidth) allow. The proxy's controls and counters live on the FaultProxy the link belongs to."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from typing import Any, Protocol

CHUNK_BYTES = 64 * 1024          # largest read per turn; delay and loss apply per chunk
QUEUE_CHUNKS = 64                # chunks held per direction (during a cut or delay) before reading stops
UP, DOWN = "up", "down"          # up: client -> target, down: target -> client


def reset_socket(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class LinkOwner(Protocol):
    """What a Link reads of the proxy that owns it (testing.faultproxy.FaultProxy): its fault settings,
    its random source, its counters, the link-up event and the bandwidth throttle."""

    faults: Any
    rng: random.Random
    counters: Any
    link_up: asyncio.Event

    async def throttle(self, direction: str, nbytes: int) -> None: ...


class Link:
    """One proxied connection: two pumps (up, down), each a reader and a delayed writer."""

    def __init__(self, proxy: LinkOwner, client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
                 target: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.proxy = proxy
        self.client, self.target = client, target
        self.tasks: list[asyncio.Task[None]] = []
        self.was_reset = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        pumps = [loop.create_task(self._pump(self.client[0], self.target[1], UP)),
                 loop.create_task(self._pump(self.target[0], self.client[1], DOWN))]
        self.tasks = pumps
        try:
            await asyncio.gather(*pumps)
        except (ConnectionError, OSError):
            self.reset()
        except asyncio.CancelledError:
            if not self.was_reset:    # the proxy is shutting down: let the cancellation through
                raise
        finally:
            for _, w in (self.client, self.target):
                w.close()

    def reset(self) -> None:
        self.was_reset = True
        for t in self.tasks:
            t.cancel()
        reset_socket(self.client[1])
        reset_socket(self.target[1])

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(QUEUE_CHUNKS)
        feeder = asyncio.get_running_loop().create_task(self._read(reader, queue))
        try:
            await self._write(writer, queue, direction)
        finally:
            feeder.cancel()

    async def _read(self, reader: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes]]) -> None:
        p = self.proxy
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await reader.read(CHUNK_BYTES)
                f = p.faults
                due = loop.time() + f.delay_s + (p.rng.uniform(0.0, f.jitter_s) if f.jitter_s else 0.0)
                if data and f.loss and p.rng.random() < f.loss:
                    due += f.rto_s
                    p.counters.chunks_lost += 1
                await queue.put((due, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            await queue.put((0.0, b""))

    async def _write(self, writer: asyncio.StreamWriter, queue: asyncio.Queue[tuple[float, bytes]],
                     direction: str) -> None:
        p = self.proxy
        loop = asyncio.get_running_loop()
        last_due = 0.0
        while True:
            due, data = await queue.get()
            last_due = max(due, last_due)         # order is kept: never overtake an earlier chunk
            if last_due > loop.time():
                await asyncio.sleep(last_due - loop.time())
            await p.link_up.wait()                # cut: hold everything until restored
            if not data:
                if writer.can_write_eof():
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                return
            await p.throttle(direction, len(data))
            writer.write(data)
            await writer.drain()
            if direction == UP:
                p.counters.bytes_up += len(data)
            else:
                p.counters.bytes_down += len(data)
