"""Backend state: sessions (their handles and memory), the shared module registry, the reaper.

A session owns tensors by handle id; ids are only looked up inside the session, so one client can
never reach another's handles. A session is bound to the connections that may use it: the gRPC
connection that opened it (its peer address, `ServicerContext.peer()`) and the first data-channel
connection that presents its id (claimed once, never re-bound); a valid session id arriving on any
other connection is refused with SessionNotOwned, so a leaked id alone does not give access.

Memory is counted per distinct storage (views cost nothing extra) plus the weights of every module
the session uses; the quota covers both. Modules are shared between sessions by content hash and
freed when the last session using them goes.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
import time
from dataclasses import dataclass, field

import torch

from gvirtus.errors import InvalidHandle, QuotaExceeded, SessionLost, SessionNotOwned
from gvirtus.graph import CompiledGraph

log = logging.getLogger("gvirtus.backend")


def storage_nbytes(t: torch.Tensor) -> tuple[int, int]:
    """(storage key, storage bytes) of a tensor."""
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


@dataclass
class ModuleEntry:
    id: int
    content_hash: str
    graph: CompiledGraph
    nbytes: int
    users: set[str] = field(default_factory=set)


class Session:
    """One client's isolated state. All mutation happens under `lock`."""

    def __init__(self, sid: str, quota_bytes: int, client: str, peer: str) -> None:
        self.id = sid
        self.client = client
        self.peer = peer                      # the gRPC connection that opened the session
        self.data_peer: str | None = None     # the data-channel connection bound to it (claimed once)
        self.quota_bytes = quota_bytes
        self.lock = threading.RLock()
        self.tensors: dict[int, torch.Tensor] = {}
        self._storages: dict[int, list[int]] = {}   # key -> [nbytes, refcount]
        self.tensor_bytes = 0
        self.modules: dict[int, ModuleEntry] = {}
        self.last_seen = time.monotonic()
        self.closed = False
        self._ids = itertools.count(1)
        self.pipeline_error: Exception | None = None

    @property
    def bytes_in_use(self) -> int:
        return self.tensor_bytes + sum(m.nbytes for m in self.modules.values())

    def touch(self) -> None:
        self.last_seen = time.monotonic()

    def check_open(self) -> None:
        if self.closed:
            raise SessionLost(f"session {self.id[:8]}… was closed (missed heartbeats or closed by the client)")

    def check_quota(self, extra: int, what: str) -> None:
        if self.bytes_in_use + extra > self.quota_bytes:
            raise QuotaExceeded(f"{what} needs {extra} bytes but the session holds {self.bytes_in_use} of its "
                                f"{self.quota_bytes}-byte quota (gvirtus.session_quota_mb); free handles first")

    def new_id(self) -> int:
        return next(self._ids)

    def put(self, hid: int, t: torch.Tensor, what: str) -> None:
        """Hold `t` under id `hid`, charging its storage to the quota (QuotaExceeded leaves nothing held)."""
        with self.lock:
            self.check_open()
            if hid in self.tensors:
                self.release(hid)
            key, nbytes = storage_nbytes(t)
            entry = self._storages.get(key)
            if entry is None:
                self.check_quota(nbytes, what)
                self._storages[key] = [nbytes, 1]
                self.tensor_bytes += nbytes
            else:
                entry[1] += 1
            self.tensors[hid] = t

    def allocate(self, nbytes: int, device: torch.device) -> int:
        """malloc: an uninitialised uint8 buffer of `nbytes` on `device`; returns its id."""
        self.check_quota(nbytes, f"malloc({nbytes})")
        t = torch.empty(nbytes, dtype=torch.uint8, device=device)
        hid = self.new_id()
        self.put(hid, t, f"malloc({nbytes})")
        return hid

    def get(self, hid: int) -> torch.Tensor:
        try:
            return self.tensors[hid]
        except KeyError:
            raise InvalidHandle(f"handle {hid} is not owned by this session (freed, never allocated, "
                                "or another session's)") from None

    def release(self, hid: int) -> None:
        with self.lock:
            t = self.tensors.pop(hid, None)
            if t is None:
                raise InvalidHandle(f"handle {hid} is not owned by this session (already freed?)")
            key, _ = storage_nbytes(t)
            entry = self._storages[key]
            entry[1] -= 1
            if entry[1] == 0:
                del self._storages[key]
                self.tensor_bytes -= entry[0]

    def clear(self) -> None:
        with self.lock:
            self.closed = True
            self.tensors.clear()
            self._storages.clear()
            self.tensor_bytes = 0


class SessionStore:
    """Every session and module of the backend; the reaper frees sessions that go silent."""

    def __init__(self, quota_bytes: int, session_timeout_s: float) -> None:
        self.quota_bytes = quota_bytes
        self.session_timeout_s = session_timeout_s
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._modules: dict[str, ModuleEntry] = {}
        self._modules_by_id: dict[int, ModuleEntry] = {}
        self._module_ids = itertools.count(1)

    def open(self, client: str, peer: str) -> Session:
        """A new session, bound to the gRPC connection `peer` (ServicerContext.peer()) that opened it."""
        s = Session(secrets.token_hex(16), self.quota_bytes, client, peer)
        with self._lock:
            self._sessions[s.id] = s
        log.info("session %s… opened for %s on %s", s.id[:8], client or "?", peer)
        return s

    def _lookup(self, sid: str) -> Session:
        with self._lock:
            s = self._sessions.get(sid)
        if s is None:
            raise SessionLost("this backend has no such session (it restarted, or the session expired); "
                              "open a new one with gvirtus.connect()")
        return s

    def get(self, sid: str, peer: str) -> Session:
        """The session `sid`, for a call that arrived on connection `peer`.

        Raises:
            SessionLost: no such session. SessionNotOwned: `peer` is neither the gRPC connection that
            opened it nor its bound data-channel connection.
        """
        s = self._lookup(sid)
        if peer not in (s.peer, s.data_peer):
            log.warning("refused a call on session %s… from %s: the session belongs to %s", sid[:8], peer, s.peer)
            raise SessionNotOwned(f"session {sid[:8]}… belongs to the connection that opened it, not to {peer}; "
                                  "a session id is not a credential: open your own session with gvirtus.connect()")
        s.touch()
        return s

    def bind_data(self, sid: str, peer: str) -> Session:
        """Bind the data-channel connection `peer` to session `sid` (once per session; the client opens it
        right after OpenSession). A second data connection presenting the id is refused with SessionNotOwned."""
        s = self._lookup(sid)
        with s.lock:
            if s.data_peer is not None:
                log.warning("refused a data channel for session %s… from %s: already bound", sid[:8], peer)
                raise SessionNotOwned(f"session {sid[:8]}… already has its data channel; {peer} cannot use it "
                                      "(open your own session with gvirtus.connect())")
            s.data_peer = peer
        s.touch()
        return s

    def close(self, sid: str, reason: str) -> None:
        with self._lock:
            s = self._sessions.pop(sid, None)
        if s is None:
            return
        with s.lock:
            held = s.bytes_in_use
            s.clear()
            modules = list(s.modules.values())
            s.modules.clear()
        with self._lock:
            for m in modules:
                m.users.discard(sid)
                if not m.users:
                    self._modules.pop(m.content_hash, None)
                    self._modules_by_id.pop(m.id, None)
        log.info("session %s… closed (%s); freed %d bytes", sid[:8], reason, held)

    def close_all(self) -> None:
        with self._lock:
            sids = list(self._sessions)
        for sid in sids:
            self.close(sid, "backend stopping")

    def reap(self) -> int:
        """Close every session silent for longer than the timeout; returns how many."""
        now = time.monotonic()
        with self._lock:
            expired = [s.id for s in self._sessions.values() if now - s.last_seen > self.session_timeout_s]
        for sid in expired:
            self.close(sid, f"no heartbeat for {self.session_timeout_s:.1f} s")
        return len(expired)

    def run_reaper(self, stop: threading.Event, interval_s: float) -> threading.Thread:
        def loop() -> None:
            while not stop.wait(interval_s):
                self.reap()

        t = threading.Thread(target=loop, name="gvirtus-reaper", daemon=True)
        t.start()
        return t

    # modules -----------------------------------------------------------------
    def attach_module(self, session: Session, content_hash: str) -> ModuleEntry | None:
        """Attach an already registered module with this content to `session` (None if unknown)."""
        with self._lock:
            m = self._modules.get(content_hash)
            if m is None:
                return None
            with session.lock:
                session.check_open()
                if m.id not in session.modules:
                    session.check_quota(m.nbytes, f"module {content_hash[:19]}")
                    session.modules[m.id] = m
                m.users.add(session.id)
            return m

    def add_module(self, session: Session, content_hash: str, graph: CompiledGraph, nbytes: int) -> ModuleEntry:
        with self._lock:
            m = self._modules.get(content_hash)
            if m is None:
                m = ModuleEntry(next(self._module_ids), content_hash, graph, nbytes)
                self._modules[content_hash] = m
                self._modules_by_id[m.id] = m
        try:
            attached = self.attach_module(session, content_hash)
        except Exception:
            with self._lock:
                if not m.users:
                    self._modules.pop(content_hash, None)
                    self._modules_by_id.pop(m.id, None)
            raise
        return attached if attached is not None else m

    def detach_module(self, session: Session, module_id: int) -> None:
        with session.lock:
            m = session.modules.pop(module_id, None)
        if m is None:
            raise InvalidHandle(f"module {module_id} is not registered in this session")
        with self._lock:
            m.users.discard(session.id)
            if not m.users:
                self._modules.pop(m.content_hash, None)
                self._modules_by_id.pop(m.id, None)

    def stats(self) -> dict[str, int]:
        with self._lock:
            sessions = list(self._sessions.values())
            modules = list(self._modules.values())
        return {"sessions": len(sessions), "session_bytes": sum(s.tensor_bytes for s in sessions),
                "modules": len(modules), "module_bytes": sum(m.nbytes for m in modules)}
