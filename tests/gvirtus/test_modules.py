"""Module layer: registered graphs run on the backend give the local results, chained on device."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gvirtus
from gvirtus.testing import BackendProcess
from tests.gvirtus.conftest import make_convnet

ATOL = 1e-5


class VisionBlock(nn.Module):
    """The op mix of the ported TFLite pose/segmentation models: (1, 3, 64, 64) -> several maps."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 32, 1)
        self.up = nn.ConvTranspose2d(32, 8, 2, stride=2)
        self.prelu = nn.PReLU(32)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        y = self.stem(F.pad(x, (0, 1, 0, 1)))                     # TF SAME, asymmetric
        y = F.hardswish(self.dw(y)) + y
        y = self.prelu(self.pw(y))
        pooled = F.avg_pool2d(y, 2)
        n, c, h, w = pooled.shape                                  # depth-to-space, TF channel order
        d2s = pooled.reshape(n, 2, 2, c // 4, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c // 4, h * 2, w * 2)
        big = F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        theta = torch.tensor([[[0.9, 0.1, 0.05], [-0.1, 0.9, 0.0]]]).expand(n, 2, 3)
        grid = F.affine_grid(theta, [n, 8, 16, 16], align_corners=False)
        sampled = F.grid_sample(d2s, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        seg = torch.sigmoid(self.up(y)).mean(dim=1, keepdim=True)
        cat = torch.cat([sampled, sampled.flip(-1)], dim=1).clamp(-3, 3)
        return big, seg, cat, torch.softmax(cat.flatten(2), dim=-1).max(dim=-1).values


def test_convnet_remote_equals_local(dev: gvirtus.RemoteDevice) -> None:
    net = make_convnet()
    x = torch.randn(2, 3, 64, 64)
    mod = dev.register_module(net, [x])
    for seed in range(3):
        xi = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            expected = net(xi)
        out = mod(xi.numpy())       # numpy in, torch out
        assert isinstance(out, torch.Tensor) and out.shape == (2, 8, 32, 32)
        torch.testing.assert_close(out, expected, atol=ATOL, rtol=1e-5)


def test_vision_ops_remote_equals_local(dev: gvirtus.RemoteDevice) -> None:
    torch.manual_seed(3)
    net = VisionBlock().eval()
    x = torch.randn(1, 3, 64, 64)
    mod = dev.register_module(net, [x])
    with torch.no_grad():
        expected = net(x)
    out = mod(x)
    assert isinstance(out, tuple) and len(out) == 4
    for got, want in zip(out, expected, strict=True):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=1e-5)


def test_chained_launches_on_device(dev: gvirtus.RemoteDevice) -> None:
    torch.manual_seed(1)
    a = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()).eval()
    b = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.Sigmoid()).eval()
    c = nn.Sequential(nn.Conv2d(8, 2, 1), nn.Flatten(), nn.Linear(2 * 32 * 32, 5)).eval()
    x = torch.randn(1, 3, 32, 32)
    ra = dev.register_module(a, [x])
    rb = dev.register_module(b, [a(x)])
    rc = dev.register_module(c, [b(a(x))])
    h_in = dev.malloc(x.numel() * 4)                  # input uploaded once to a raw buffer
    dev.memcpy_htod(h_in, x.numpy())
    h1 = ra(h_in, keep_on_device=True)
    h2 = rb(h1, keep_on_device=True)
    h3 = rb(h2, keep_on_device=True)                  # the same module twice in the chain
    assert isinstance(h3, gvirtus.DeviceBuffer) and h3.dtype == "float32" and h3.shape == (1, 8, 32, 32)
    out = rc(h3)
    with torch.no_grad():
        expected = c(b(b(a(x))))
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=1e-5)
    np.testing.assert_allclose(dev.memcpy_dtoh(h1), a(x).detach().numpy(), atol=ATOL)
    for h in (h_in, h1, h2, h3):
        dev.free(h)


def test_identical_content_is_not_uploaded_again(backend: BackendProcess) -> None:
    net = make_convnet(seed=5)
    x = torch.randn(1, 3, 32, 32)
    d1 = gvirtus.connect(backend.target, token=backend.token)
    d2 = gvirtus.connect(backend.target, token=backend.token)
    try:
        m1 = d1.register_module(net, [x])
        assert m1.uploaded
        before = d1.stats()
        assert d1.register_module(net, [x]) is m1                      # same session: same object
        m2 = d2.register_module(make_convnet(seed=5), [x])             # same content, other session
        assert not m2.uploaded and m2.content_hash == m1.content_hash
        assert d1.stats()["modules"] == before["modules"]
        m3 = d2.register_module(make_convnet(seed=6), [x])             # different weights: uploaded
        assert m3.uploaded and m3.content_hash != m1.content_hash
        torch.testing.assert_close(m2(x), m1(x))
    finally:
        d1.close()
        d2.close()


def test_a_shape_free_graph_registered_for_two_sizes_is_two_modules(dev: gvirtus.RemoteDevice) -> None:
    """A clone names no shape in its graph: the input specs must still tell its registrations apart."""

    class Copy(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.clone()

    small, large = torch.arange(12.0).reshape(3, 4), torch.arange(20.0).reshape(4, 5)
    m_small, m_large = dev.register_module(Copy(), [small]), dev.register_module(Copy(), [large])
    assert m_small is not m_large and m_small.content_hash != m_large.content_hash
    torch.testing.assert_close(m_large(large), large)
    torch.testing.assert_close(m_small(small), small)


def test_launch_input_checks(dev: gvirtus.RemoteDevice) -> None:
    net = make_convnet()
    mod = dev.register_module(net, [torch.zeros(1, 3, 16, 16)])
    with pytest.raises(gvirtus.InvalidRequest, match=r"expected float32 \[1, 3, 16, 16\], got float32 \[1, 3, 8, 8\]"):
        mod(torch.zeros(1, 3, 8, 8))
    with pytest.raises(gvirtus.InvalidRequest, match="float64"):
        mod(np.zeros((1, 3, 16, 16)))
    with pytest.raises(gvirtus.InvalidRequest, match="takes 1 inputs, got 2"):
        mod(torch.zeros(1, 3, 16, 16), torch.zeros(1))
    small = dev.malloc(10)
    with pytest.raises(gvirtus.InvalidRequest, match="launch input 0"):
        mod(small)
    assert mod(torch.zeros(1, 3, 16, 16)).shape == (1, 8, 8, 8)


def test_other_sessions_module_id_is_invalid(backend: BackendProcess, dev: gvirtus.RemoteDevice) -> None:
    mod = dev.register_module(make_convnet(seed=9), [torch.zeros(1, 3, 8, 8)])
    other = gvirtus.connect(backend.target, token=backend.token)
    try:
        with pytest.raises(gvirtus.InvalidHandle, match="not registered in this session"):
            other._call("Launch", gvirtus.frontend.pb.LaunchRequest(module_id=mod.module_id), "launch")
    finally:
        other.close()


class Structured(nn.Module):
    """Outputs a dict with tensors, a tuple, and plain Python values (kept on the client)."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, object]:
        return {"sum": x + y, "none": None, "n": x.shape[0], "pair": (x.mean(), torch.cat([x, y]))}


def test_structured_outputs_and_several_inputs(dev: gvirtus.RemoteDevice) -> None:
    x, y = torch.randn(2, 3), torch.randn(2, 3)
    mod = dev.register_module(Structured(), [x, y])
    out = mod(x, y)
    want = Structured()(x, y)
    assert out["none"] is None and out["n"] == 2
    torch.testing.assert_close(out["sum"], want["sum"])
    torch.testing.assert_close(out["pair"][0], want["pair"][0])
    torch.testing.assert_close(out["pair"][1], want["pair"][1])


class _Photo(nn.Module):
    """A uint8 photo, a float map and a scalar: host inputs of a launch whose outputs stay on the device."""

    def forward(self, image: torch.Tensor, field: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return image.clone(), image.float().mean(dim=-1) * scale + field


def test_kept_launches_with_host_and_handle_inputs(dev: gvirtus.RemoteDevice) -> None:
    """Launches with handles or kept outputs go over the data channel (op K): host bytes, raw malloc
    buffers typed to the spec and kept handles mix; nothing is left behind; bad inputs are named."""
    image = torch.randint(0, 256, (150, 160, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    field, scale = torch.rand(150, 160), torch.tensor(0.5)
    mod = dev.register_module(_Photo(), [image, field, scale])
    before = dev.stats()["session_bytes"]
    raw = dev.malloc(image.numel())                      # a raw buffer holding the photo's bytes
    dev.memcpy_htod(raw, image.numpy())
    for first in (image, dataclasses.replace(raw, shape=tuple(image.shape))):
        kept = mod(first, field, scale, keep_on_device=True)
        assert all(isinstance(h, gvirtus.DeviceBuffer) for h in kept)
        assert kept[0].dtype == "uint8" and kept[0].shape == (150, 160, 3)
        assert torch.equal(torch.from_numpy(dev.memcpy_dtoh(kept[0])), image)
        again = mod(kept[0], field, scale)              # a kept handle as input, outputs to the host
        np.testing.assert_allclose(again[1].numpy(), (image.float().mean(dim=-1) * 0.5 + field).numpy(), rtol=1e-6)
        for h in kept:
            dev.free(h)
    dev.free(raw)
    assert dev.stats()["session_bytes"] == before
    with pytest.raises(gvirtus.InvalidRequest, match=r"input 0: expected uint8 \[150, 160, 3\]"):
        mod(image[:60], field, scale, keep_on_device=True)
    assert torch.equal(mod(image, field, scale)[0], image)   # the session still works


@pytest.mark.parametrize("channel", ["data", "grpc"])
def test_some_outputs_kept_and_the_others_returned_in_the_same_launch(dev: gvirtus.RemoteDevice,
                                                                       channel: str) -> None:
    """keep_on_device per output: the photo stays on the device, the small map comes back; the same values
    and the same session bytes on the data channel (one reply) and over gRPC (kept, read back, freed)."""
    image = torch.randint(0, 256, (150, 160, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(6))
    field, scale = torch.rand(150, 160), torch.tensor(0.5)
    mod = dev.register_module(_Photo(), [image, field, scale])
    if channel == "grpc":
        assert dev._conn.data is not None
        dev._conn.data.close()
        dev._conn.data = None
    before = dev.stats()["session_bytes"]
    photo, mean = mod(image, field, scale, keep_on_device=[True, False])
    assert isinstance(photo, gvirtus.DeviceBuffer) and (photo.dtype, photo.shape) == ("uint8", (150, 160, 3))
    assert isinstance(mean, torch.Tensor)
    np.testing.assert_allclose(mean.numpy(), (image.float().mean(dim=-1) * 0.5 + field).numpy(), rtol=1e-6)
    assert dev.stats()["session_bytes"] == before + image.numel()      # only the photo is held
    back, again = mod(photo, field, scale, keep_on_device=[False, True])
    assert torch.equal(back, image) and isinstance(again, gvirtus.DeviceBuffer)
    dev.free_many([photo, again])
    assert dev.stats()["session_bytes"] == before
    for bad in ([True], [True, 1], "yes"):
        with pytest.raises(gvirtus.InvalidRequest, match=r"keep_on_device must be a bool or 2 bools"):
            mod(image, field, scale, keep_on_device=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("channel", ["data", "grpc"])
def test_a_launch_frees_the_buffers_it_is_given_to_free(dev: gvirtus.RemoteDevice, channel: str) -> None:
    """free_after: the last reader of a kept photo frees it in the same request (data channel) or with one
    more call (gRPC); also when the launch fails; a stranger's id stops the launch before it runs."""
    image = torch.randint(0, 256, (150, 160, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(7))
    field, scale = torch.rand(150, 160), torch.tensor(0.5)
    mod = dev.register_module(_Photo(), [image, field, scale])
    if channel == "grpc":
        assert dev._conn.data is not None
        dev._conn.data.close()
        dev._conn.data = None
    before = dev.stats()["session_bytes"]
    photo, _ = mod(image, field, scale, keep_on_device=[True, False])
    back, mean = mod(photo, field, scale, free_after=[photo])
    assert torch.equal(back, image) and dev.stats()["session_bytes"] == before
    with pytest.raises(gvirtus.InvalidHandle):
        dev.free(photo)                                             # already gone
    photo, _ = mod(image, field, scale, keep_on_device=[True, False])
    with pytest.raises(gvirtus.InvalidRequest, match="expected float32"):
        mod(photo, field.double(), scale, free_after=[photo])      # refused on the client: nothing sent
    wrong = dev.malloc(10)                                         # not the registered input: refused there
    with pytest.raises(gvirtus.InvalidRequest, match="launch input 0: expected uint8"):
        mod(wrong, field, scale, free_after=[photo, wrong])        # fails on the backend: freed all the same
    assert dev.stats()["session_bytes"] == before
    if channel == "data":
        stranger = dataclasses.replace(photo, id=987654)
        kept = mod(image, field, scale, keep_on_device=True)
        with pytest.raises(gvirtus.InvalidHandle, match="987654"):
            mod(kept[0], field, scale, keep_on_device=True, free_after=[kept[0], stranger])
        assert dev.stats()["session_bytes"] == before + sum(h.nbytes for h in kept)   # nothing ran or was freed
        dev.free_many(kept)


def test_malformed_kept_launches_get_typed_errors_and_the_data_channel_stays_in_step(
        dev: gvirtus.RemoteDevice) -> None:
    from gvirtus.datachannel import ERROR_LEN, REQUEST

    image = torch.zeros(150, 160, 3, dtype=torch.uint8)
    field, scale = torch.rand(150, 160), torch.tensor(0.5)
    mod = dev.register_module(_Photo(), [image, field, scale])
    data = dev._conn.data
    assert data is not None

    def send(body: bytes, module_id: int = mod.module_id) -> None:
        def run() -> None:
            data._sock.sendall(REQUEST.pack(b"K", module_id, 0, len(body)) + body)
            data._status("raw op K")
        data._guard("raw op K", run)

    def listing(refs: object, tail: bytes = b"", keep: object = (1, 1)) -> bytes:
        head = json.dumps({"inputs": refs, "keep": keep}).encode()
        return ERROR_LEN.pack(len(head)) + head + tail

    three = [["b", 72000], ["b", 96000], ["b", 4]]
    free_head = b'{"inputs":[],"keep":[1,1],"free":[1.5]}'
    bad_free = ERROR_LEN.pack(len(free_head)) + free_head
    cases = [
        (bad_free, gvirtus.InvalidRequest, "free must be a list of at most"),
        (b"", gvirtus.InvalidRequest, "has no input list"),
        (ERROR_LEN.pack(4) + b"[1,", gvirtus.InvalidRequest, "input list of 4 bytes"),
        (ERROR_LEN.pack(3) + b"[1,", gvirtus.InvalidRequest, "not JSON"),
        (ERROR_LEN.pack(2) + b"[]", gvirtus.InvalidRequest, r'expected \{"inputs": \[...\], "keep": \[...\]\}'),
        (listing(three, bytes(168004), keep=[1]), gvirtus.InvalidRequest,
         r"keep must hold one 0 or 1 per output \(2\), got \[1\]"),
        (listing(three, bytes(168004), keep=[1, 2]), gvirtus.InvalidRequest, r"keep must hold .* got \[1, 2\]"),
        (listing([["b", 72000]]), gvirtus.InvalidRequest, "module takes 3 inputs"),
        (listing([["b", 5], ["b", 96000], ["b", 4]], b"x" * 96009), gvirtus.InvalidRequest,
         r"input 0: expected uint8 \[150, 160, 3\] \(72000 bytes\), got 5 bytes"),
        (listing([["x", 1], ["b", 96000], ["b", 4]]), gvirtus.InvalidRequest, "input 0: expected"),
        (listing([["b", 72000], ["b", 96000], ["b", 4]], b"x" * 10), gvirtus.InvalidRequest,
         "declares 168004 host bytes, the body has 10"),
        (listing([["h", 987654], ["b", 96000], ["b", 4]], bytes(96004)), gvirtus.InvalidHandle, "987654"),
    ]
    for body, error, message in cases:
        with pytest.raises(error, match=message):
            send(body)
    with pytest.raises(gvirtus.InvalidHandle, match="module 424242 is not registered"):
        send(listing([]), module_id=424242)
    assert not data.broken
    assert torch.equal(mod(image, field, scale)[0], image)   # still in step
