"""Hostile gvirtus clients against a real backend process (gvirtus.testing.BackendProcess).

Raw gRPC calls with fuzzed arguments (hypothesis), wrong tokens, another session's handles,
allocations above the quota and disallowed ops: every one must come back as a TYPED error
(the `gvirtus-error` trailer names a gvirtus.errors class) and the backend must stay healthy,
with its memory bounded by the session quota.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gvirtus
from gvirtus.proto import gvirtus_pb2 as pb
from gvirtus.protocol import ERROR_METADATA_KEY, SESSION_METADATA_KEY
from gvirtus.testing import BackendProcess
from tests.faults.deployment import proc_stats

FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
QUOTA_MB = 64                          # conftest's gvirtus_backend
RSS_BOUND_MB = QUOTA_MB + 150          # backend growth over the whole module: quota + allocator slack
RUNTIME_ERRORS = {"QuotaExceeded", "InvalidHandle", "InvalidRequest"}
u64 = st.one_of(st.integers(0, 64), st.integers(0, 2**20), st.integers(2**31, 2**64 - 1))


class RawSession:
    """A real session (opened with the token) driven through the raw gRPC stub of its own connection
    (the backend binds a session to the connection that opened it)."""

    def __init__(self, backend: BackendProcess) -> None:
        self.dev = gvirtus.connect(backend.target, token=backend.token, timeout_s=10)
        self.stub = self.dev._conn.stub
        self.md = ((SESSION_METADATA_KEY, self.dev.session_id),)

    def call(self, name: str, request: object) -> str | None:
        """None on success, else the gvirtus error class the backend named (the call must be typed)."""
        try:
            getattr(self.stub, name)(request, metadata=self.md, timeout=10)
            return None
        except grpc.RpcError as exc:
            trailer = dict(exc.trailing_metadata() or ())  # type: ignore[attr-defined]
            kind = trailer.get(ERROR_METADATA_KEY)
            assert kind, f"{name}: untyped error {exc.code()}: {exc.details()}"  # type: ignore[attr-defined]
            return str(kind)

    def close(self) -> None:
        self.dev.close()


@pytest.fixture(scope="module")
def backend(gvirtus_backend: BackendProcess) -> Iterator[BackendProcess]:
    pid = gvirtus_backend.proc.pid if gvirtus_backend.proc else 0
    before = proc_stats(pid)
    yield gvirtus_backend
    after = proc_stats(pid)
    assert before and after, "the backend process died"
    assert after["rss_mb"] - before["rss_mb"] < RSS_BOUND_MB, (before, after)


@pytest.fixture(scope="module")
def raw(backend: BackendProcess) -> Iterator[RawSession]:
    s = RawSession(backend)
    yield s
    s.close()


def _healthy(backend: BackendProcess) -> None:
    dev = gvirtus.connect(backend.target, token=backend.token, timeout_s=10)
    try:
        h = dev.malloc(16)
        dev.memcpy_htod(h, np.arange(4, dtype=np.float32))
        np.testing.assert_array_equal(dev.memcpy_dtoh(h, np.float32, (4,)), np.arange(4, dtype=np.float32))
    finally:
        dev.close()


@FUZZ
@given(st.sampled_from(["Malloc", "Read", "Write", "Memset", "MemcpyDtoD", "Free"]), u64, u64, u64,
       st.binary(max_size=64))
def test_fuzzed_runtime_calls_get_typed_errors(raw: RawSession, op: str, a: int, b: int, c: int,
                                                data: bytes) -> None:
    own = raw.dev.malloc(256)
    try:
        handle = own.id
        pick = [handle, a][b % 2]                 # our own handle, or a made-up one
        request = {
            "Malloc": lambda: pb.MallocRequest(nbytes=a),
            "Read": lambda: pb.ReadRequest(handle=pick, offset=b, nbytes=c),
            "Write": lambda: pb.CopyChunk(handle=pick, offset=b, data=data),
            "Memset": lambda: pb.MemsetRequest(handle=pick, value=c % 2**32, offset=b, nbytes=c),
            "MemcpyDtoD": lambda: pb.DtoDRequest(dst=pick, src=handle, nbytes=c, dst_offset=b, src_offset=a % 512),
            "Free": lambda: pb.Handle(id=a),
        }[op]()
        kind = raw.call(op, request)
        assert kind is None or kind in RUNTIME_ERRORS, f"{op}: {kind}"
        if op == "Malloc" and kind is None:       # a successful allocation: give it back
            raw.dev.properties()
    finally:
        raw.call("Free", pb.Handle(id=own.id))


@FUZZ
@given(st.text(max_size=40), st.one_of(st.text(max_size=60), st.just("[[], {}]"), st.just('[[{"w": 99}], {}]'),
                                       st.just('[[{"h": 123456789}], {}]'), st.just("[" * 50)))
def test_fuzzed_pipeline_ops_are_refused_typed(raw: RawSession, target: str, args_json: str) -> None:
    batch = pb.PipelineBatch(items=[pb.PipelineItem(op=pb.Op(target=target, args_json=args_json,
                                                             outputs=[(1 << 62) + 7])),
                                    pb.PipelineItem(sync=pb.Sync(seq=1))])
    try:
        replies = list(raw.stub.Pipeline(iter([batch]), metadata=raw.md, timeout=10))
    except grpc.RpcError as exc:
        trailer = dict(exc.trailing_metadata() or ())  # type: ignore[attr-defined]
        assert trailer.get(ERROR_METADATA_KEY), f"untyped: {exc.code()} {exc.details()}"  # type: ignore[attr-defined]
        return
    assert replies and replies[-1].error_kind in {"OpNotAllowed", "InvalidRequest", "InvalidHandle"}, replies


def test_wrong_tokens_are_refused_and_do_not_lock_out_the_right_one(backend: BackendProcess) -> None:
    for guess in ["", "x", backend.token + " " if backend.token else "y", "A" * 4096, "\u00e9\u00e8"]:
        with pytest.raises(gvirtus.AuthenticationFailed):
            gvirtus.connect(backend.target, token=guess, timeout_s=10)
    _healthy(backend)


def test_another_sessions_handle_is_invalid_and_its_data_untouched(backend: BackendProcess) -> None:
    owner = gvirtus.connect(backend.target, token=backend.token, timeout_s=10)
    thief = RawSession(backend)
    try:
        h = owner.malloc(64)
        owner.memcpy_htod(h, np.full(16, 7, np.float32))
        hid = h.id
        assert thief.call("Read", pb.ReadRequest(handle=hid, offset=0, nbytes=64)) == "InvalidHandle"
        assert thief.call("Write", pb.CopyChunk(handle=hid, offset=0, data=b"\0" * 64)) == "InvalidHandle"
        assert thief.call("Memset", pb.MemsetRequest(handle=hid, value=0, offset=0, nbytes=64)) == "InvalidHandle"
        assert thief.call("Free", pb.Handle(id=hid)) == "InvalidHandle"
        np.testing.assert_array_equal(owner.memcpy_dtoh(h, np.float32, (16,)), np.full(16, 7, np.float32))
        # A made-up session id is not a session at all.
        fake = ((SESSION_METADATA_KEY, owner.session_id[::-1]),)
        with pytest.raises(grpc.RpcError) as err:
            thief.stub.Read(pb.ReadRequest(handle=hid, offset=0, nbytes=64), metadata=fake, timeout=10)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
    finally:
        thief.close()
        owner.close()


def test_allocations_above_quota_are_refused_and_memory_stays_bounded(backend: BackendProcess) -> None:
    quota = QUOTA_MB << 20
    dev = gvirtus.connect(backend.target, token=backend.token, timeout_s=10)
    try:
        with pytest.raises(gvirtus.QuotaExceeded):
            dev.malloc(quota + 1)
        with pytest.raises(gvirtus.QuotaExceeded):
            dev.malloc(2**63)
        held = [dev.malloc(4 << 20) for _ in range(QUOTA_MB // 4)]        # exactly the quota
        with pytest.raises(gvirtus.QuotaExceeded):
            dev.malloc(1)
        second = gvirtus.connect(backend.target, token=backend.token, timeout_s=10)
        try:                                                               # quotas are per session
            second.free(second.malloc(1 << 20))
        finally:
            second.close()
        for h in held:
            dev.free(h)
        dev.free(dev.malloc(quota))                                        # all of it is back
    finally:
        dev.close()


def test_disallowed_ops_and_bad_graphs_are_refused(backend: BackendProcess) -> None:
    raw = RawSession(backend)
    try:
        graph = json.dumps({"nodes": [{"op": "aten::from_file.default", "args": ["/etc/passwd"], "kwargs": {}}],
                            "inputs": 1, "outputs": []})
        header = pb.ModuleHeader(content_hash="0" * 64, graph_json=graph)
        try:
            raw.stub.RegisterModule(iter([pb.ModuleChunk(header=header)]), metadata=raw.md, timeout=10)
            kind = None
        except grpc.RpcError as exc:
            kind = dict(exc.trailing_metadata() or ()).get(ERROR_METADATA_KEY)  # type: ignore[attr-defined]
        assert kind in {"OpNotAllowed", "InvalidRequest"}
        assert raw.call("Launch", pb.LaunchRequest(module_id=424242)) == "InvalidHandle"
    finally:
        raw.close()
    _healthy(backend)
