"""Bulk copies on a plain TCP (or TLS) stream beside the gRPC port: memory goes socket <-> tensor directly.

gRPC moves large messages through several user-space copies and HTTP/2 flow control; this stream
receives straight into the destination tensor's memory (`recv_into`, CPU backend) and sends
straight from it, so a 16 MB copy costs about what the socket costs. The backend listens on an
ephemeral port of the same host and announces it in OpenReply.data_port; a client that cannot
reach it uses the gRPC copy RPCs instead. This module: the wire format and the client (DataClient);
the backend side is gvirtus.dataserver.

Wire format (little-endian), after the TLS handshake when gvirtus.secure:
    hello    client: MAGIC + session id (32 ASCII hex)        server: status
    request  client: struct REQUEST (op, handle, offset, nbytes), then the bytes for W. Ops: W write,
             R read, K launch, P null call (status only), M malloc(nbytes) -> u64 id, F free(handle),
             G free many (handle = their count n <= MAX_FREE_BATCH, nbytes = 8n: the u64 ids follow)
             (for K: handle = module id, offset = 0, nbytes = the body: u32 length + JSON
             {"inputs": [["h", id] | ["b", n], ...], "keep": [0 | 1, ...], "free": [id, ...]} (one
             entry per input: a handle, or n host bytes that follow; one flag per output: 1 = leave
             it on the device; handles to free once the launch has run, whether it succeeded or not:
             all must be the session's, else nothing runs), then the host bytes in order)
    reply    server: status; for R with status 0, the nbytes bytes; for K, u32 length + JSON, one entry
             per output: ["h", id, nbytes, dtype, shape] (kept on the device) or ["b", dtype, shape]
             (its bytes follow the JSON, in output order)
    status   one byte 0 = ok; else 1, u32 length, JSON {"kind": error class, "message": ...}
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Sequence
from typing import Any

import torch

from gvirtus.errors import GvirtusError, RemoteDeviceLost, error_class

log = logging.getLogger("gvirtus.datachannel")
MAGIC = b"GVD1"
SESSION_ID_BYTES = 32
REQUEST = struct.Struct("<cQQQ")
ERROR_LEN = struct.Struct("<I")
ID = struct.Struct("<Q")
MAX_ERROR_BYTES = 64 * 1024
MAX_FREE_BATCH = 4096  # handles one G request may free
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


def recv_exact(sock: socket.socket, view: memoryview) -> None:
    got = 0
    while got < view.nbytes:
        n = sock.recv_into(view[got:], view.nbytes - got)
        if n == 0:
            raise ConnectionError("peer closed the data channel")
        got += n


def recv_bytes(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    recv_exact(sock, memoryview(buf))
    return bytes(buf)


def tune_socket(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)


def send_all(sock: socket.socket, parts: list[Any]) -> None:
    """Send several buffers in one gathered write where possible (no copy, no extra segment)."""
    if isinstance(sock, ssl.SSLSocket) or len(parts) == 1:
        for p in parts:
            sock.sendall(p)
        return
    views = [memoryview(p).cast("B") for p in parts]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= views[0].nbytes:
            sent -= views[0].nbytes
            views.pop(0)
        if views and sent:
            views[0] = views[0][sent:]


class DataClient:
    """The client side: one connection, one request at a time (a lock serialises threads)."""

    def __init__(self, host: str, port: int, session_id: str, *, timeout_s: float, root_cert: bytes | None,
                 secure: bool) -> None:
        self.target = f"{host}:{port}"
        sock = socket.create_connection((host, port), timeout=timeout_s)
        tune_socket(sock)
        if secure:
            ctx = ssl.create_default_context(cadata=root_cert.decode() if root_cert else None)
            sock = ctx.wrap_socket(sock, server_hostname=host)
        self._sock = sock
        self._lock = threading.Lock()
        self.broken = False
        sock.sendall(MAGIC + session_id.encode("ascii"))
        self._status("open the data channel")

    def _status(self, what: str) -> None:
        head = recv_bytes(self._sock, 1)
        if head == b"\x00":
            return
        (n,) = ERROR_LEN.unpack(recv_bytes(self._sock, ERROR_LEN.size))
        if n > MAX_ERROR_BYTES:
            raise RemoteDeviceLost(f"{what}: malformed error reply on the data channel")
        body = json.loads(recv_bytes(self._sock, n))
        raise error_class(str(body.get("kind")))(f"{what}: {body.get('message')}")

    def _guard(self, what: str, fn: Any) -> Any:
        with self._lock:
            if self.broken:
                raise RemoteDeviceLost(f"{what}: the data channel to {self.target} is closed")
            try:
                return fn()
            except GvirtusError:
                raise
            except (OSError, ConnectionError, ssl.SSLError, ValueError, RecursionError) as exc:   # a garbled reply
                self.broken = True
                raise RemoteDeviceLost(f"{what}: lost the data channel to {self.target} ({exc})") from None

    def write(self, handle: int, offset: int, data: memoryview, what: str) -> None:
        def run() -> None:
            head = REQUEST.pack(b"W", handle, offset, data.nbytes)
            send_all(self._sock, [head, data] if data.nbytes else [head])
            self._status(what)
        self._guard(what, run)

    def read_into(self, handle: int, offset: int, out: memoryview, what: str) -> None:
        def run() -> None:
            self._sock.sendall(REQUEST.pack(b"R", handle, offset, out.nbytes))
            self._status(what)
            if out.nbytes:
                recv_exact(self._sock, out)
        self._guard(what, run)

    def malloc(self, nbytes: int) -> int:
        def run() -> int:
            self._sock.sendall(REQUEST.pack(b"M", 0, 0, nbytes))
            self._status(f"malloc({nbytes})")
            return int(ID.unpack(recv_bytes(self._sock, ID.size))[0])
        return int(self._guard(f"malloc({nbytes})", run))

    def free(self, handle: int) -> None:
        def run() -> None:
            self._sock.sendall(REQUEST.pack(b"F", handle, 0, 0))
            self._status(f"free({handle})")
        self._guard(f"free({handle})", run)

    def free_many(self, handles: list[int]) -> None:
        """Free several handles in one round trip (all are tried; the error names the first unknown one)."""
        what = f"free({len(handles)} handles)"

        def run() -> None:
            self._sock.sendall(REQUEST.pack(b"G", len(handles), 0, ID.size * len(handles))
                               + struct.pack(f"<{len(handles)}Q", *handles))
            self._status(what)
        self._guard(what, run)

    def ping(self) -> None:
        """A null round trip through the backend's session lookup."""
        def run() -> None:
            self._sock.sendall(REQUEST.pack(b"P", 0, 0, 0))
            self._status("ping")
        self._guard("ping", run)

    def launch(self, module_id: int, inputs: list[int | memoryview], keep: Sequence[bool], what: str,
               free: Sequence[int] = ()) -> list[Any]:
        """Op K. inputs: a handle id or host bytes each; keep: one flag per output; free: handle ids the backend
        frees after the launch. Returns, per output, a host tensor, or (id, nbytes, dtype, shape) of an output
        left on the device."""
        def run() -> list[Any]:
            refs = [["h", x] if isinstance(x, int) else ["b", x.nbytes] for x in inputs]
            head = json.dumps({"inputs": refs, "keep": [int(bool(k)) for k in keep], "free": list(free)}).encode()
            host = [x for x in inputs if not isinstance(x, int) and x.nbytes]
            body = ERROR_LEN.size + len(head) + sum(b.nbytes for b in host)
            send_all(self._sock, [REQUEST.pack(b"K", module_id, 0, body), ERROR_LEN.pack(len(head)) + head, *host])
            self._status(what)
            (n,) = ERROR_LEN.unpack(recv_bytes(self._sock, ERROR_LEN.size))
            if n > MAX_ERROR_BYTES:
                raise ConnectionError("malformed launch reply")
            return [self._launch_output(entry) for entry in json.loads(recv_bytes(self._sock, n))]
        return list(self._guard(what, run))

    def _launch_output(self, entry: list[Any]) -> Any:
        """One output of a launch reply: (id, nbytes, dtype, shape) if kept, else its bytes read into a tensor."""
        from gvirtus.protocol import torch_dtype

        if entry[0] == "h":
            _, hid, nbytes, dtype, shape = entry
            return int(hid), int(nbytes), str(dtype), tuple(shape)
        if entry[0] != "b" or len(entry) != 3:
            raise ConnectionError(f"malformed launch reply entry {str(entry)[:80]}")
        _, dtype, shape = entry
        t = torch.empty(shape, dtype=torch_dtype(dtype))
        if t.numel():
            recv_exact(self._sock, t.view(-1).view(torch.uint8).numpy().data)
        return t

    def close(self) -> None:
        with self._lock:
            self.broken = True
            try:
                self._sock.close()
            except OSError:
                pass

