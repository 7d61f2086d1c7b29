"""Security: token, TLS, op allowlist, read-only weights, content hash, quota, message size."""

from __future__ import annotations

import datetime
import ipaddress
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

import gvirtus
from gvirtus.graph import CapturedGraph, capture, content_hash
from gvirtus.proto import gvirtus_pb2 as pb
from gvirtus.proto import gvirtus_pb2_grpc as pb_grpc
from gvirtus.protocol import ERROR_METADATA_KEY, SESSION_METADATA_KEY
from gvirtus.testing import BackendProcess
from tests.gvirtus.conftest import QUOTA_MB, make_convnet


def test_wrong_or_missing_token_is_rejected(backend: BackendProcess) -> None:
    with pytest.raises(gvirtus.AuthenticationFailed, match="rejected the token"):
        gvirtus.connect(backend.target, token="not-the-token")
    with pytest.raises(gvirtus.AuthenticationFailed):
        gvirtus.connect(backend.target, token=None)
    gvirtus.connect(backend.target, token=backend.token).close()


def test_calls_without_a_session_are_rejected(backend: BackendProcess) -> None:
    with grpc.insecure_channel(backend.target) as ch:
        stub = pb_grpc.GvirtusStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            stub.Malloc(pb.MallocRequest(nbytes=8), timeout=5)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.RpcError) as err:
            stub.Malloc(pb.MallocRequest(nbytes=8), metadata=((SESSION_METADATA_KEY, "guessed"),), timeout=5)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def _graph_with(cap: CapturedGraph, mutate: Callable[[dict], None]) -> CapturedGraph:
    graph = json.loads(cap.graph_json)
    mutate(graph)
    text = json.dumps(graph)
    return CapturedGraph(text, cap.weights, cap.input_specs, cap.output_specs, cap.out_spec,
                         content_hash(text, cap.weights, cap.input_specs))


def test_disallowed_op_in_a_graph_is_rejected(dev: gvirtus.RemoteDevice) -> None:
    cap = capture(make_convnet(), [torch.zeros(1, 3, 8, 8)])

    def add_from_file(g: dict) -> None:
        g["nodes"].append({"op": "aten::from_file.default", "args": ["/etc/passwd"], "kwargs": {}})

    with pytest.raises(gvirtus.OpNotAllowed, match="aten::from_file.default"):
        dev._register(_graph_with(cap, add_from_file))

    def python_callable(g: dict) -> None:
        g["nodes"][0]["op"] = "builtins.eval"

    with pytest.raises(gvirtus.OpNotAllowed, match="builtins.eval"):
        dev._register(_graph_with(cap, python_callable))
    assert dev.stats()["sessions"] >= 1   # backend still serving


def test_disallowed_op_in_the_pipeline_is_rejected_at_sync(dev: gvirtus.RemoteDevice) -> None:
    x = dev.tensor(torch.arange(6.0))
    y = torch.ops.aten.as_strided(x, (2, 2), (1, 1))   # storage reinterpretation: not allowed remotely
    with pytest.raises(gvirtus.OpNotAllowed, match="aten::as_strided"):
        y.cpu()
    torch.testing.assert_close((x * 2).cpu(), torch.arange(6.0) * 2)   # the session goes on


def test_graph_writing_into_a_weight_is_rejected(dev: gvirtus.RemoteDevice) -> None:
    cap = capture(make_convnet(), [torch.zeros(1, 3, 8, 8)])

    graph = json.loads(cap.graph_json)
    graph["nodes"].append({"op": "aten::add_.Tensor", "args": [{"w": 0}, {"f": 1.0}], "kwargs": {}})
    text = json.dumps(graph)
    bad = CapturedGraph(text, cap.weights, cap.input_specs, cap.output_specs, cap.out_spec,
                        content_hash(text, cap.weights, cap.input_specs))
    with pytest.raises(gvirtus.OpNotAllowed, match="writes in place into weight 0"):
        dev._register(bad)


def test_tampered_content_hash_is_rejected(dev: gvirtus.RemoteDevice) -> None:
    cap = capture(make_convnet(), [torch.zeros(1, 3, 8, 8)])
    forged = CapturedGraph(cap.graph_json, [w * 0 for w in cap.weights], cap.input_specs, cap.output_specs,
                           cap.out_spec, cap.content_hash)    # claims the hash of the real weights
    with pytest.raises(gvirtus.InvalidRequest, match="content hash mismatch"):
        dev._register(forged)


def test_quota_exceeded_is_typed_and_backend_stays_healthy(dev: gvirtus.RemoteDevice) -> None:
    quota = QUOTA_MB * 1024 * 1024
    keep = dev.malloc(quota // 2)
    with pytest.raises(gvirtus.QuotaExceeded, match=r"quota \(gvirtus.session_quota_mb\)"):
        dev.malloc(quota // 2 + 1)
    with pytest.raises(gvirtus.QuotaExceeded):
        dev.malloc(10 * quota)
    big = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 1)).eval()       # outputs 1x64x256x256 f32 = 16 MB
    mod = dev.register_module(big, [torch.zeros(1, 3, 256, 256)])
    kept = [mod(torch.zeros(1, 3, 256, 256), keep_on_device=True)]
    with pytest.raises(gvirtus.QuotaExceeded):
        kept.append(mod(torch.zeros(1, 3, 256, 256), keep_on_device=True))
    x = dev.tensor(torch.zeros(1024, 1024))                               # 4 MB, fits
    with pytest.raises(gvirtus.QuotaExceeded):                            # 5 more copies do not
        ys = [x + i for i in range(5)]
        ys[-1].cpu()
    dev.free(keep)
    for h in kept:
        dev.free(h)
    h = dev.malloc(quota // 2 + 1)       # fits again once freed
    dev.memset(h, 3, nbytes=4)
    np.testing.assert_array_equal(dev.memcpy_dtoh(h, np.uint8, (4,)), np.full(4, 3, np.uint8))
    assert dev.properties()["session_bytes_in_use"] >= quota // 2


@pytest.fixture(scope="module")
def tls_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BackendProcess, str]]:
    """A TLS backend with a 1 MB message limit (one process for both properties keeps the tests fast)."""
    cert, key = _self_signed(tmp_path_factory.mktemp("tls"))
    with BackendProcess(tls_cert_file=cert, tls_key_file=key, max_message_mb=1, session_timeout_s=5.0) as b:
        yield b, cert


def test_max_message_size_is_enforced(tls_backend: tuple[BackendProcess, str]) -> None:
    b, cert = tls_backend
    d = gvirtus.connect(b.target, token=b.token, max_message_mb=8, secure=True, root_cert=cert)
    try:
        mod = d.register_module(torch.nn.Identity(), [torch.zeros(1, 3, 512, 512)])   # 3 MB input
        assert mod(torch.ones(1, 3, 512, 512)).sum() == 3 * 512 * 512   # raw bytes on the data channel
        data, d._conn.data = d._conn.data, None                          # the gRPC path has the limit
        with pytest.raises(gvirtus.InvalidRequest, match=r"over the 1048576-byte message limit"):
            mod(torch.zeros(1, 3, 512, 512))
        d._conn.data = data
        h = d.malloc(3 * 512 * 512 * 4)                     # copies are chunked: 3 MB still fits
        d.memcpy_htod(h, np.ones((3, 512, 512), np.float32))
        # A raw oversized message is refused by gRPC on the backend, which keeps serving.
        creds = grpc.ssl_channel_credentials(Path(cert).read_bytes())
        with grpc.secure_channel(b.target, creds, options=[("grpc.max_send_message_length", 8 << 20)]) as ch:
            stub = pb_grpc.GvirtusStub(ch)
            with pytest.raises(grpc.RpcError) as err:
                stub.LookupModule(pb.LookupRequest(content_hash="x" * (2 << 20)),
                                  metadata=((SESSION_METADATA_KEY, d.session_id),), timeout=10)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        out = d.memcpy_dtoh(h, np.float32, (3, 512, 512))   # responses are chunked too
        assert out.shape == (3, 512, 512) and float(out.min()) == 1.0
    finally:
        d.close()


def _self_signed(tmp: Path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_tls_channel(tls_backend: tuple[BackendProcess, str]) -> None:
    b, cert = tls_backend
    d = gvirtus.connect(b.target, token=b.token, secure=True, root_cert=cert)
    try:
        h = d.malloc(16)
        d.memcpy_htod(h, np.arange(4, dtype=np.float32))
        np.testing.assert_array_equal(d.memcpy_dtoh(h, np.float32, (4,)), np.arange(4, dtype=np.float32))
    finally:
        d.close()
    with pytest.raises(gvirtus.RemoteDeviceLost):         # a plaintext client cannot talk to it
        gvirtus.connect(b.target, token=b.token, timeout_s=2.0)


# A session is bound to the connection that opened it ---------------------------------------------


def _typed_rpc_error(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    trailer = dict(err.value.trailing_metadata() or ())  # type: ignore[attr-defined]
    return err.value.code(), str(trailer.get(ERROR_METADATA_KEY))  # type: ignore[attr-defined]


def test_a_session_id_from_another_grpc_connection_is_refused(backend: BackendProcess) -> None:
    """Two real clients: the owner's session id, sent on the other's gRPC connection, is refused
    (PERMISSION_DENIED, SessionNotOwned) for every kind of call; the owner's session goes on untouched."""
    owner = gvirtus.connect(backend.target, token=backend.token, timeout_s=10)
    other = gvirtus.connect(backend.target, token=backend.token, timeout_s=10)   # authenticated, own session
    try:
        h = owner.malloc(64)
        owner.memcpy_htod(h, np.full(16, 7, np.float32))
        stolen = ((SESSION_METADATA_KEY, owner.session_id),)
        stub = other._conn.stub                                   # the other client's own gRPC connection
        calls = {
            "Read": lambda: stub.Read(pb.ReadRequest(handle=h.id, offset=0, nbytes=64), metadata=stolen, timeout=10),
            "Write": lambda: stub.Write(pb.CopyChunk(handle=h.id, offset=0, data=b"\0" * 64), metadata=stolen,
                                        timeout=10),
            "Malloc": lambda: stub.Malloc(pb.MallocRequest(nbytes=8), metadata=stolen, timeout=10),
            "Heartbeat": lambda: stub.Heartbeat(pb.Empty(), metadata=stolen, timeout=10),
            "CloseSession": lambda: stub.CloseSession(pb.Empty(), metadata=stolen, timeout=10),
            "MemcpyDtoH": lambda: list(stub.MemcpyDtoH(pb.ReadRequest(handle=h.id), metadata=stolen, timeout=10)),
            "Pipeline": lambda: list(stub.Pipeline(iter([pb.PipelineBatch(items=[pb.PipelineItem(
                sync=pb.Sync(seq=1, fetch=[h.id]))])]), metadata=stolen, timeout=10)),
        }
        for name, call in calls.items():
            assert _typed_rpc_error(call) == (grpc.StatusCode.PERMISSION_DENIED, "SessionNotOwned"), name
        # the same refusal through the client API: a RemoteDevice whose calls carry the stolen id
        other._conn.metadata = stolen
        with pytest.raises(gvirtus.SessionNotOwned, match="belongs to the connection that opened it"):
            other.properties()
        # the owner was not closed, freed or overwritten by any of it
        np.testing.assert_array_equal(owner.memcpy_dtoh(h, np.float32, (16,)), np.full(16, 7, np.float32))
        assert owner.properties()["session_bytes_in_use"] >= 64
    finally:
        other.close()
        owner.close()


def test_a_second_data_channel_for_a_session_is_refused(backend: BackendProcess) -> None:
    """The data channel is bound to the first connection that presents the session id (the owner's,
    opened right after OpenSession); another TCP connection presenting it is refused, typed."""
    from gvirtus.datachannel import DataClient

    owner = gvirtus.connect(backend.target, token=backend.token, timeout_s=10)
    try:
        assert owner._conn.data is not None, "the owner's data channel did not open"
        port = owner._conn.open_reply.data_port
        with pytest.raises(gvirtus.SessionNotOwned, match="already has its data channel"):
            DataClient("127.0.0.1", port, owner.session_id, timeout_s=5, root_cert=None, secure=False)
        h = owner.malloc(32)                           # the owner's own data channel still serves
        owner.memcpy_htod(h, np.arange(8, dtype=np.float32))
        np.testing.assert_array_equal(owner.memcpy_dtoh(h, np.float32, (8,)), np.arange(8, dtype=np.float32))
    finally:
        owner.close()
