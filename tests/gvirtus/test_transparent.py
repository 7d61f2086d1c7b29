"""Transparent layer: unmodified torch code on RemoteTensors, pipelined, errors at the next sync."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gvirtus
from gvirtus.client import wait_until
from gvirtus.transparent import RemoteTensor
from tests.gvirtus.conftest import make_convnet
from tests.gvirtus.test_modules import VisionBlock


def test_module_moved_to_the_remote_device_matches_local(dev: gvirtus.RemoteDevice) -> None:
    net = make_convnet(seed=4)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = net(x)
    remote_net = dev.to_remote(make_convnet(seed=4))
    assert all(isinstance(p, RemoteTensor) for p in remote_net.parameters())
    y = remote_net(dev.tensor(x))
    assert isinstance(y, RemoteTensor) and y.shape == expected.shape and y.dtype == torch.float32
    torch.testing.assert_close(y.cpu(), expected, atol=1e-5, rtol=1e-5)


def test_vision_block_transparent_matches_local(dev: gvirtus.RemoteDevice) -> None:
    torch.manual_seed(3)
    net = VisionBlock().eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = net(x)
        torch.manual_seed(3)
        out = dev.to_remote(VisionBlock().eval())(dev.tensor(x))
    for got, want in zip(out, expected, strict=True):
        torch.testing.assert_close(got.cpu(), want, atol=1e-5, rtol=1e-5)


def test_shapes_are_known_without_a_round_trip(dev: gvirtus.RemoteDevice) -> None:
    a = dev.tensor(np.ones((4, 6), np.float32))
    b = (a @ a.T).unsqueeze(0).expand(3, 4, 4)
    assert b.shape == (3, 4, 4) and b.dtype == torch.float32
    c = F.interpolate(b.unsqueeze(1), size=(8, 8), mode="bilinear", align_corners=False)
    assert c.shape == (3, 1, 8, 8)
    torch.testing.assert_close(c.cpu(), torch.full((3, 1, 8, 8), 6.0))


def test_host_conversions_and_inplace_ops(dev: gvirtus.RemoteDevice) -> None:
    a = dev.tensor(torch.arange(5, dtype=torch.float32))
    a.mul_(2).add_(1)
    a[0] = 100.0                                   # index_put with a CPU scalar
    assert a.tolist() == [100.0, 3.0, 5.0, 7.0, 9.0]
    assert float(a.sum()) == 124.0 and a.max().item() == 100.0
    np.testing.assert_array_equal(a.to(torch.int64).numpy(), [100, 3, 5, 7, 9])
    host = torch.zeros(5)
    host.copy_(a)
    assert host[1] == 3.0
    mask = a > 4
    nz = torch.nonzero(mask)                       # data-dependent shape: one blocking round trip
    assert nz.shape == (4, 1)
    assert nz.flatten().tolist() == [0, 2, 3, 4]


def test_error_surfaces_at_the_next_sync(dev: gvirtus.RemoteDevice) -> None:
    a = dev.tensor(torch.arange(4.0))
    idx = dev.tensor(torch.tensor([0, 7]))         # out of range: only the backend can tell
    bad = torch.index_select(a, 0, idx)            # returns at once, shape from meta
    later = (bad * 2).sum()                        # queued behind the failure
    assert bad.shape == (2,) and later.shape == ()
    with pytest.raises(gvirtus.RemoteExecutionError, match="index"):
        dev.synchronize()
    torch.testing.assert_close((a + 1).cpu(), torch.arange(1.0, 5.0))  # the session continues


def test_released_tensors_free_backend_memory(dev: gvirtus.RemoteDevice) -> None:
    base = dev.properties()["session_bytes_in_use"]
    x = dev.tensor(torch.zeros(256, 1024))
    ys = [x + i for i in range(8)]
    ys[-1].cpu()
    assert dev.properties()["session_bytes_in_use"] >= base + 9 * 256 * 1024 * 4
    del x, ys
    gc.collect()
    dev.synchronize()                              # carries the releases
    assert wait_until(lambda: dev.properties()["session_bytes_in_use"] == base, 5.0)


def test_many_small_ops_are_pipelined_in_order(dev: gvirtus.RemoteDevice) -> None:
    a = dev.tensor(torch.zeros(3))
    for _ in range(2000):
        a = a + 1
    torch.testing.assert_close(a.cpu(), torch.full((3,), 2000.0))


def test_mixing_sessions_is_rejected(backend: object, dev: gvirtus.RemoteDevice) -> None:
    other = gvirtus.connect(dev.target, token=getattr(backend, "token", None))
    try:
        with pytest.raises(gvirtus.InvalidRequest, match="two remote sessions"):
            dev.tensor(torch.ones(2)) + other.tensor(torch.ones(2))
    finally:
        other.close()


def test_releases_stay_behind_the_ops_that_use_them(dev: gvirtus.RemoteDevice,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny batches make the queue long: a released id must never overtake a queued op using it."""
    monkeypatch.setattr("gvirtus.opstream.PIPELINE_MAX_BATCH", 3)
    a = dev.tensor(torch.zeros(2))
    for _ in range(600):
        a = a * 1 + 1          # the previous `a` and the product are released while still queued
    torch.testing.assert_close(a.cpu(), torch.full((2,), 600.0))
