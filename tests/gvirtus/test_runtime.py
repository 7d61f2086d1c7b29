"""Runtime layer against a real backend: properties, malloc/free, copies, memset, isolation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gvirtus
from gvirtus.testing import BackendProcess
from tests.gvirtus.conftest import make_convnet


def test_properties_describe_the_cpu_backend(dev: gvirtus.RemoteDevice) -> None:
    p = dev.properties()
    assert p["device_type"] == "cpu" and p["device"] == "cpu"
    assert p["total_memory"] > 0 and 0 < p["free_memory"] <= p["total_memory"]
    assert p["name"] and p["torch_version"].startswith("2.")
    assert p["session_quota_bytes"] == 64 * 1024 * 1024


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int64, np.uint8, np.bool_])
def test_htod_dtoh_roundtrip(dev: gvirtus.RemoteDevice, dtype: type) -> None:
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((7, 33)) * 50).astype(dtype)
    h = dev.malloc(a.nbytes)
    dev.memcpy_htod(h, a)
    np.testing.assert_array_equal(dev.memcpy_dtoh(h, dtype, a.shape), a)
    dev.free(h)


def test_large_copy_is_chunked_and_exact(dev: gvirtus.RemoteDevice) -> None:
    a = np.random.default_rng(1).standard_normal(3 * 1024 * 1024 // 4 + 123).astype(np.float32)
    big = np.concatenate([a, a, a])   # ~9 MB: three 4 MB chunks
    h = dev.malloc(big.nbytes)
    dev.memcpy_htod(h, big)
    np.testing.assert_array_equal(dev.memcpy_dtoh(h, np.float32, big.shape), big)
    dev.free(h)


def test_offsets_dtod_memset_synchronize(dev: gvirtus.RemoteDevice) -> None:
    src, dst = dev.malloc(64), dev.malloc(64)
    dev.memset(dst, 0)
    dev.memcpy_htod(src, np.arange(64, dtype=np.uint8))
    dev.memcpy_dtod(dst, src, nbytes=16, dst_offset=8, src_offset=32)
    dev.memset(dst, 0xAB, nbytes=4, offset=60)
    dev.synchronize()
    expected = np.zeros(64, np.uint8)
    expected[8:24] = np.arange(32, 48)
    expected[60:] = 0xAB
    np.testing.assert_array_equal(dev.memcpy_dtoh(dst, np.uint8, (64,)), expected)
    np.testing.assert_array_equal(dev.memcpy_dtoh(src, np.uint8, (8,), offset=56), np.arange(56, 64))


def test_out_of_range_and_bad_values_are_typed_errors(dev: gvirtus.RemoteDevice) -> None:
    h = dev.malloc(16)
    with pytest.raises(gvirtus.InvalidRequest, match=r"outside the buffer of 16 bytes"):
        dev.memcpy_htod(h, np.zeros(5, np.float32))
    with pytest.raises(gvirtus.InvalidRequest, match="outside the buffer"):
        dev.memcpy_dtoh(h, np.float32, (4,), offset=4)
    with pytest.raises(gvirtus.InvalidRequest, match="not a byte"):
        dev.memset(h, 300)
    with pytest.raises(gvirtus.InvalidRequest, match="complex64"):
        dev.memcpy_dtoh(h, np.complex64, (1,))
    with pytest.raises(gvirtus.InvalidRequest, match="non-negative int"):
        dev.malloc(-1)
    dev.ping()   # the session is still fine


def test_freed_handle_is_invalid(dev: gvirtus.RemoteDevice) -> None:
    h = dev.malloc(8)
    dev.free(h)
    with pytest.raises(gvirtus.InvalidHandle, match=f"handle {h.id} is not owned by this session"):
        dev.memcpy_dtoh(h, np.uint8, (8,))
    with pytest.raises(gvirtus.InvalidHandle):
        dev.free(h)


def test_free_many_frees_all_in_one_call_and_names_a_stranger(dev: gvirtus.RemoteDevice) -> None:
    in_use = dev.properties()["session_bytes_in_use"]
    hs = [dev.malloc(1024) for _ in range(5)]
    assert dev.properties()["session_bytes_in_use"] == in_use + 5 * 1024
    dev.free_many(hs[:3])
    assert dev.properties()["session_bytes_in_use"] == in_use + 2 * 1024
    with pytest.raises(gvirtus.InvalidHandle, match=f"handle {hs[0].id} is not owned by this session"):
        dev.free_many([hs[0], hs[3], hs[4]])  # one already freed: the others are still freed
    assert dev.properties()["session_bytes_in_use"] == in_use
    dev.free_many([])
    dev.ping()


def test_free_many_over_the_limit_is_refused_and_the_channel_stays_in_step(dev: gvirtus.RemoteDevice) -> None:
    from gvirtus.datachannel import MAX_FREE_BATCH

    data = dev._conn.data
    assert data is not None, "this backend's data channel is expected to be reachable on loopback"
    with pytest.raises(gvirtus.InvalidRequest, match=f"at most {MAX_FREE_BATCH}"):
        data.free_many(list(range(1, MAX_FREE_BATCH + 2)))
    h = dev.malloc(8)  # the stream is still in step
    dev.free_many([h])


def test_sessions_are_isolated(backend: BackendProcess) -> None:
    a = gvirtus.connect(backend.target, token=backend.token)
    b = gvirtus.connect(backend.target, token=backend.token)
    try:
        ha = a.malloc(32)
        a.memcpy_htod(ha, np.full(32, 7, np.uint8))
        hb = b.malloc(32)
        assert ha.id == hb.id     # ids are per session: the same number names different memory
        b.memset(hb, 1)
        np.testing.assert_array_equal(a.memcpy_dtoh(ha, np.uint8, (32,)), np.full(32, 7, np.uint8))
        b.free(hb)
        with pytest.raises(gvirtus.InvalidHandle):     # b cannot read or free a's buffer
            b.memcpy_dtoh(ha, np.uint8, (32,))
        with pytest.raises(gvirtus.InvalidHandle):
            b.free(ha)
        np.testing.assert_array_equal(a.memcpy_dtoh(ha, np.uint8, (32,)), np.full(32, 7, np.uint8))
    finally:
        a.close()
        b.close()


def test_closed_device_raises_typed_error(backend: BackendProcess) -> None:
    d = gvirtus.connect(backend.target, token=backend.token)
    d.close()
    with pytest.raises(gvirtus.RemoteDeviceLost, match="closed"):
        d.malloc(8)


def test_grpc_copy_path_without_the_data_channel(dev: gvirtus.RemoteDevice) -> None:
    """Copies fall back to gRPC (unary below one chunk, streamed above) when the data channel is absent."""
    assert dev._conn.data is not None          # loopback: the bulk-copy stream is used by default
    net = make_convnet(seed=7)
    x = torch.randn(1, 3, 16, 16)
    mod = dev.register_module(net, [x])
    via_data_channel = mod(x)
    dev._conn.data.close()
    dev._conn.data = None
    torch.testing.assert_close(mod(x), via_data_channel)     # launch as a gRPC call
    with torch.no_grad():
        torch.testing.assert_close(via_data_channel, net(x), atol=1e-5, rtol=1e-5)
    for n in (1000, 3 * 1024 * 1024 + 7):
        a = np.random.default_rng(n).integers(0, 255, n, dtype=np.uint8)
        h = dev.malloc(n)
        dev.memcpy_htod(h, a)
        np.testing.assert_array_equal(dev.memcpy_dtoh(h, np.uint8, (n,)), a)
        with pytest.raises(gvirtus.InvalidRequest, match="outside the buffer"):
            dev.memcpy_htod(h, a, offset=1)


def test_data_channel_needs_a_live_session(backend: BackendProcess) -> None:
    from gvirtus.datachannel import DataClient

    d = gvirtus.connect(backend.target, token=backend.token)
    try:
        port = d._conn.open_reply.data_port
        with pytest.raises(gvirtus.SessionLost):
            DataClient("127.0.0.1", port, "0" * 32, timeout_s=5.0, root_cert=None, secure=False)
    finally:
        d.close()


def test_null_calls_on_every_path(dev: gvirtus.RemoteDevice) -> None:
    dev.ping()
    dev.ping_grpc()
    dev.ping_stream()
    dev.close()
    with pytest.raises(gvirtus.RemoteDeviceLost):
        dev.ping()


def test_data_channel_drops_silent_unauthenticated_connections(dev: gvirtus.RemoteDevice) -> None:
    import socket

    from gvirtus.dataserver import HELLO_TIMEOUT_S

    port = dev._conn.open_reply.data_port
    with socket.create_connection(("127.0.0.1", port), timeout=HELLO_TIMEOUT_S + 10) as s:
        s.sendall(b"GVD1")                 # starts a hello, never finishes it
        assert s.recv(1) == b""            # the backend hangs up after HELLO_TIMEOUT_S
    dev.ping()


def test_dtod_within_one_buffer_overlapping(dev: gvirtus.RemoteDevice) -> None:
    h = dev.malloc(16)
    dev.memcpy_htod(h, np.arange(16, dtype=np.uint8))
    dev.memcpy_dtod(h, h, src_offset=1)                  # like memmove(h, h + 1, 15)
    np.testing.assert_array_equal(dev.memcpy_dtoh(h, np.uint8, (16,)), [*range(1, 16), 15])
    with pytest.raises(gvirtus.InvalidRequest, match="outside the buffer"):
        dev.memcpy_dtod(h, h, dst_offset=2**63)
