"""The backend side of the bulk-data stream (wire format: gvirtus.datachannel): accept authenticated
connections and serve copies, malloc/free, module launches (op K) and the null call against sessions.

Each connection is bound to the session its hello names (SessionStore.bind_data: once per session),
and every later request on it is looked up as coming from that connection; a second connection
presenting the same session id is refused with SessionNotOwned."""

from __future__ import annotations

import itertools
import json
import logging
import socket
import ssl
import struct
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gvirtus.boundary import byte_view, check_input, check_range, handle_input, keep_outputs
from gvirtus.codec import loads
from gvirtus.datachannel import (
    ERROR_LEN,
    ID,
    MAGIC,
    MAX_ERROR_BYTES,
    MAX_FREE_BATCH,
    REQUEST,
    SESSION_ID_BYTES,
    recv_bytes,
    recv_exact,
    send_all,
    tune_socket,
)
from gvirtus.errors import InvalidRequest, each_then_raise
from gvirtus.executor import translate

log = logging.getLogger("gvirtus.dataserver")
ACCEPT_BACKLOG = 64
STAGING_CHUNK_BYTES = 4 * 1024 * 1024   # CUDA backend: host staging between socket and device
HELLO_TIMEOUT_S = 2.0                    # a connection must authenticate this fast (no idle unauthenticated threads)
_CONNECTION_IDS = itertools.count(1)


@dataclass(frozen=True)
class Bound:
    """A data connection and the session it is bound to: every lookup goes through the binding."""

    sid: str
    peer: str    # "data#N ADDR:PORT": unique per connection, never reused

    def session(self, store: Any) -> Any:
        return store.get(self.sid, self.peer)


class DataServer:
    """The backend side: accept data connections, serve W/R requests against session handles."""

    def __init__(self, store: Any, device: torch.device, bind: str, tls: tuple[bytes, bytes] | None,
                 port: int = 0) -> None:
        self.store = store
        self.device = device
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        self._listener = socket.create_server((bind, port), family=family, backlog=ACCEPT_BACKLOG)
        self.port = int(self._listener.getsockname()[1])
        self._ssl: ssl.SSLContext | None = None
        if tls is not None:
            self._ssl = _server_context(*tls)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="gvirtus-data-accept", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self._listener.close()
        except OSError:
            pass

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, peer), name="gvirtus-data", daemon=True).start()

    def _serve(self, conn: socket.socket, peer: Any) -> None:
        try:
            tune_socket(conn)
            conn.settimeout(HELLO_TIMEOUT_S)
            if self._ssl is not None:
                conn = self._ssl.wrap_socket(conn, server_side=True)
            hello = recv_bytes(conn, len(MAGIC) + SESSION_ID_BYTES)
            if hello[:len(MAGIC)] != MAGIC:
                return
            sid = hello[len(MAGIC):].decode("ascii", errors="replace")
            bound = Bound(sid, f"data#{next(_CONNECTION_IDS)} {_address(peer)}")
            if not self._reply(conn, lambda: self.store.bind_data(sid, bound.peer)):
                return
            conn.settimeout(None)
            header = bytearray(REQUEST.size)
            while True:
                recv_exact(conn, memoryview(header))
                op, handle, offset, nbytes = REQUEST.unpack(header)
                if op == b"W":
                    self._write(conn, bound, handle, offset, nbytes)
                elif op == b"R":
                    self._read(conn, bound, handle, offset, nbytes)
                elif op == b"K":
                    self._launch(conn, bound, handle, nbytes)
                elif op == b"P":                   # null call: session check only
                    self._reply(conn, lambda: bound.session(self.store))
                elif op == b"M":                   # malloc(nbytes) -> u64 id
                    self._reply(conn, lambda n=nbytes: bound.session(self.store).allocate(n, self.device),
                                lambda hid: [ID.pack(hid)])
                elif op == b"F":                   # free(handle)
                    self._reply(conn, lambda h=handle: bound.session(self.store).release(h))
                elif op == b"G":                   # free(handle count, nbytes = 8 x count ids follow)
                    self._free_many(conn, bound, handle, nbytes)
                else:
                    return
        except (OSError, ConnectionError, ssl.SSLError) as exc:
            log.debug("data connection from %s ended: %s", peer, exc)
        finally:
            conn.close()

    def _free_many(self, conn: socket.socket, bound: Bound, count: int, nbytes: int) -> None:
        """Free every listed handle (all are tried); the reply names the first that was not this session's."""
        if count > MAX_FREE_BATCH or nbytes != count * ID.size:
            _discard(conn, nbytes)
            self._reply(conn, lambda: _raise(InvalidRequest(
                f"free of {count} handles with {nbytes} bytes of ids: at most {MAX_FREE_BATCH}, {ID.size} bytes each")))
            return
        ids = struct.unpack(f"<{count}Q", recv_bytes(conn, nbytes)) if count else ()

        self._reply(conn, lambda: each_then_raise(bound.session(self.store).release, ids))

    def _reply(self, conn: socket.socket, action: Any, payload: Any = None) -> bool:
        """Run `action`; send status 0 (+ `payload(result)` in the same write), or the typed error."""
        try:
            result = action()
            parts = payload(result) if payload is not None else []
        except Exception as exc:
            err = translate(exc)
            body = json.dumps({"kind": type(err).__name__, "message": str(err)[:4000]}).encode()
            conn.sendall(b"\x01" + ERROR_LEN.pack(len(body)) + body)
            return False
        send_all(conn, [b"\x00", *(p for p in parts if memoryview(p).nbytes)])
        return True

    def _target(self, bound: Bound, handle: int, offset: int, nbytes: int, what: str) -> torch.Tensor:
        t = bound.session(self.store).get(handle)
        view = byte_view(t, f"handle {handle}")   # the same checks as the RPCs (gvirtus.boundary)
        check_range(offset, nbytes, view.numel(), f"{what} handle {handle}")
        return view[offset:offset + nbytes]

    def _write(self, conn: socket.socket, bound: Bound, handle: int, offset: int, nbytes: int) -> None:
        try:
            dst = self._target(bound, handle, offset, nbytes, "memcpy_htod to")
        except Exception as exc:
            _discard(conn, nbytes)                  # keep the stream in step, then report
            failure = exc
            self._reply(conn, lambda: _raise(failure))
            return
        if dst.device.type == "cpu":
            if nbytes:
                recv_exact(conn, dst.numpy().data)
        else:
            staging = np.empty(min(nbytes, STAGING_CHUNK_BYTES), dtype=np.uint8)
            for a in range(0, nbytes, staging.nbytes):
                n = min(staging.nbytes, nbytes - a)
                recv_exact(conn, staging[:n].data)
                dst[a:a + n].copy_(torch.from_numpy(staging[:n]))
        self._reply(conn, lambda: None)

    def _launch(self, conn: socket.socket, bound: Bound, module_id: int, nbytes: int) -> None:
        """Op K: inputs are handles or host bytes; each output comes back as raw bytes or stays on the device."""
        left = nbytes
        try:
            module, specs = _module_of(bound.session(self.store), module_id)
            if left < ERROR_LEN.size:
                raise InvalidRequest(f"launch: a {left}-byte body has no input list")
            (n,) = ERROR_LEN.unpack(recv_bytes(conn, ERROR_LEN.size))
            left -= ERROR_LEN.size
            if n > min(MAX_ERROR_BYTES, left):
                raise InvalidRequest(f"launch: input list of {n} bytes in a {nbytes}-byte body")
            text = recv_bytes(conn, n)
            left -= n
            head = loads(text, "launch: the input list")   # typed, depth-bounded
            refs, keep, free = _launch_head(head, len(module.graph.outputs))
            plan = _launch_plan(refs, specs, left)
        except Exception as exc:
            _discard(conn, left)
            failure = exc
            self._reply(conn, lambda: _raise(failure))
            return
        host: dict[int, torch.Tensor] = {}
        for k in sorted(plan):   # the host inputs, in order
            t = torch.empty(specs[k].shape, dtype=plan[k])
            if t.numel():
                recv_exact(conn, t.view(-1).view(torch.uint8).numpy().data)
            host[k] = t if self.device.type == "cpu" else t.to(self.device)

        def run() -> list[Any]:
            s = bound.session(self.store)
            for hid in free:   # all of them the session's, or nothing runs (and nothing is freed)
                s.get(hid)
            try:
                inputs = [check_input(k, host[k], spec) if k in host else handle_input(s, k, int(refs[k][1]), spec)
                          for k, spec in enumerate(specs)]
                return _split_outputs(s, module.graph.run(inputs), keep)
            finally:
                for hid in free:
                    if hid in s.tensors:   # listed twice, or freed meanwhile by another call of the session
                        s.release(hid)

        self._reply(conn, run, _launch_payload)

    def _read(self, conn: socket.socket, bound: Bound, handle: int, offset: int, nbytes: int) -> None:
        self._reply(conn, lambda: self._target(bound, handle, offset, nbytes, "memcpy_dtoh from"),
                    lambda src: [(src if src.device.type == "cpu" else src.cpu()).numpy().data])


def _split_outputs(s: Any, outs: list[Any], keep: list[bool]) -> list[Any]:
    """Each output either stored in the session (kept: (id, nbytes, dtype, shape)) or as a host tensor."""
    kept = iter(keep_outputs(s, [o for o, k in zip(outs, keep, strict=True) if k]))
    return [next(kept) if k else _host_tensor(o) for o, k in zip(outs, keep, strict=True)]


def _host_tensor(out: Any) -> torch.Tensor:
    return (out if isinstance(out, torch.Tensor) else torch.tensor(out)).detach().cpu().contiguous()


def _launch_payload(outs: list[Any]) -> list[Any]:
    """The reply to op K: the output listing (see gvirtus.datachannel), then the host outputs' bytes."""
    from gvirtus.protocol import dtype_name

    listing = [["b", dtype_name(o.dtype), list(o.shape)] if isinstance(o, torch.Tensor) else ["h", o[0], o[1], o[2],
                                                                                              list(o[3])]
               for o in outs]
    head = json.dumps(listing).encode()
    return [ERROR_LEN.pack(len(head)) + head,
            *(o.view(-1).view(torch.uint8).numpy().data for o in outs if isinstance(o, torch.Tensor))]


def _launch_head(head: Any, num_outputs: int) -> tuple[list[Any], list[bool], list[int]]:
    """Op K's JSON head as (input references, keep flag per output, handles to free afterwards), checked."""
    if not isinstance(head, dict) or not isinstance(head.get("inputs"), list) or not isinstance(head.get("keep"), list):
        raise InvalidRequest(f'launch: expected {{"inputs": [...], "keep": [...]}}, got {str(head)[:80]}')
    keep = head["keep"]
    if len(keep) != num_outputs or any(k not in (0, 1) or isinstance(k, float) for k in keep):
        raise InvalidRequest(f"launch: keep must hold one 0 or 1 per output ({num_outputs}), got {str(keep)[:80]}")
    free = head.get("free", [])
    if not isinstance(free, list) or len(free) > MAX_FREE_BATCH or not all(
            isinstance(h, int) and not isinstance(h, bool) for h in free):
        raise InvalidRequest(f"launch: free must be a list of at most {MAX_FREE_BATCH} handle ids, "
                             f"got {str(free)[:80]}")
    return head["inputs"], [bool(k) for k in keep], free


def _module_of(session: Any, module_id: int) -> tuple[Any, list[Any]]:
    from gvirtus.errors import InvalidHandle

    m = session.modules.get(module_id)
    if m is None:
        raise InvalidHandle(f"module {module_id} is not registered in this session")
    return m, list(m.graph.input_specs)


def _launch_plan(refs: Any, specs: list[Any], host_bytes: int) -> dict[int, torch.dtype]:
    """Check op K's input list against the module's specs; the dtype of each host input, by position."""
    from gvirtus.protocol import nbytes_of, torch_dtype

    if not isinstance(refs, list) or len(refs) != len(specs):
        raise InvalidRequest(f"launch: module takes {len(specs)} inputs, the input list is {str(refs)[:80]}")
    plan, total = {}, 0
    for k, (ref, spec) in enumerate(zip(refs, specs, strict=True)):
        if not (isinstance(ref, list) and len(ref) == 2 and ref[0] in ("h", "b") and type(ref[1]) is int):
            raise InvalidRequest(f"launch input {k}: expected [\"h\", id] or [\"b\", nbytes], got {str(ref)[:80]}")
        if ref[0] == "b":
            want = nbytes_of(spec.dtype, spec.shape)
            if ref[1] != want:
                raise InvalidRequest(f"launch input {k}: expected {spec.dtype} {list(spec.shape)} ({want} bytes), "
                                     f"got {ref[1]} bytes")
            plan[k] = torch_dtype(spec.dtype)
            total += want
    if total != host_bytes:
        raise InvalidRequest(f"launch: the input list declares {total} host bytes, the body has {host_bytes}")
    return plan


def _address(peer: Any) -> str:
    """ADDR:PORT of a socket peer (IPv4 or IPv6 tuple)."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer)


def _raise(exc: Exception) -> None:
    raise exc


def _discard(conn: socket.socket, nbytes: int) -> None:
    scratch = memoryview(bytearray(min(nbytes, STAGING_CHUNK_BYTES) or 1))
    left = nbytes
    while left:
        n = conn.recv_into(scratch, min(left, scratch.nbytes))
        if n == 0:
            raise ConnectionError("peer closed the data channel")
        left -= n


def _server_context(key_pem: bytes, cert_pem: bytes) -> ssl.SSLContext:
    import os
    import tempfile

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    with tempfile.TemporaryDirectory() as tmp:   # ssl loads PEM only from files
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        with open(cert, "wb") as f:
            f.write(cert_pem)
        with open(key, "wb") as f:
            f.write(key_pem)
        ctx.load_cert_chain(cert, key)
    return ctx
