"""gvirtus.kernels: the OpenCV CPU kernels equal the portable tensor-op versions, bad arguments are named,
and a graph calling them runs on a real backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import gvirtus
from gvirtus import kernels, testing


def _coords(n: int, m: int, lo: float, hi: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(n, m, generator=g, dtype=torch.float64) * (hi - lo) + lo) * kernels.INTER_TAB).round().int(), \
        ((torch.rand(n, m, generator=g, dtype=torch.float64) * (hi - lo) + lo) * kernels.INTER_TAB).round().int()


@pytest.mark.parametrize("border", [kernels.BORDER_ZERO, kernels.BORDER_REPLICATE])
def test_remap_cpu_kernel_is_bit_identical_to_the_tensor_ops(border: int) -> None:
    image = torch.randint(0, 256, (61, 47, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    xq, yq = _coords(40, 33, -5.0, 66.0, seed=2)  # inside, on and beyond every edge
    cpu = torch.ops.gvirtus.remap_bilinear_u8(image, xq, yq, border)
    ref = kernels._remap_tensor_ops(image, xq.reshape(-1), yq.reshape(-1), border).reshape(40, 33, 3)
    assert cpu.shape == (40, 33, 3) and cpu.dtype == torch.uint8
    torch.testing.assert_close(cpu, ref, rtol=0, atol=0)
    # a pixel-exact coordinate returns the pixel itself
    one = torch.ops.gvirtus.remap_bilinear_u8(image, torch.tensor([[5 * 32]], dtype=torch.int32),
                                              torch.tensor([[7 * 32]], dtype=torch.int32), border)
    assert one[0, 0].tolist() == image[7, 5].tolist()


def test_remap_far_outside_falls_back_to_the_tensor_ops() -> None:
    image = torch.full((8, 8, 3), 9, dtype=torch.uint8)
    far = torch.tensor([[40000 * 32, 3 * 32]], dtype=torch.int32)
    out = torch.ops.gvirtus.remap_bilinear_u8(image, far, torch.zeros_like(far), kernels.BORDER_REPLICATE)
    assert out[0].tolist() == [[9, 9, 9], [9, 9, 9]]


def test_warp_affine_cpu_kernel_matches_grid_sample() -> None:
    src = torch.rand(64, 48, generator=torch.Generator().manual_seed(3))
    theta = 0.3
    c, s = np.cos(theta), np.sin(theta)
    matrix = torch.tensor([[0.4 * c, 0.4 * s, 10.0], [-0.4 * s, 0.4 * c, 20.0]], dtype=torch.float64)
    cpu = torch.ops.gvirtus.warp_affine_f32(src, matrix, 90, 70)
    ref = kernels._warp_tensor_ops(src, matrix, 90, 70)  # what other devices run
    assert cpu.shape == (90, 70) and cpu.dtype == torch.float32
    assert float((cpu - ref).abs().max()) < 1 / 32  # cv2 rounds coordinates to 1/32 px
    # against an independent float64 bilinear sample at a few pixels
    for y, x in [(5, 3), (40, 30), (80, 60)]:
        sx, sy = (float(row @ torch.tensor([x, y, 1.0], dtype=torch.float64)) for row in matrix)
        x0, y0 = int(np.floor(sx)), int(np.floor(sy))
        fx, fy = sx - x0, sy - y0

        def at(yy: int, xx: int) -> float:
            return float(src[yy, xx]) if 0 <= yy < 64 and 0 <= xx < 48 else 0.0

        want = ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
                + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))
        assert abs(float(cpu[y, x]) - want) < 1 / 32 + 1e-6, (y, x)


@pytest.mark.parametrize(("args", "message"), [
    ((torch.zeros(4, 4, 3), torch.zeros(2, 2, dtype=torch.int32), torch.zeros(2, 2, dtype=torch.int32), 0),
     "image must be \\(H, W, C\\) uint8"),
    ((torch.zeros(4, 4, 3, dtype=torch.uint8), torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.int32), 0),
     "xq, yq must be"),
    ((torch.zeros(4, 4, 3, dtype=torch.uint8), torch.zeros(2, 2, dtype=torch.int32),
      torch.zeros(2, 2, dtype=torch.int32), 7), "border must be 0 \\(zero\\) or 1 \\(replicate\\), got 7"),
])
def test_remap_names_bad_arguments(args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        torch.ops.gvirtus.remap_bilinear_u8(*args)


class _Warp(torch.nn.Module):
    def forward(self, image: torch.Tensor, xq: torch.Tensor, yq: torch.Tensor) -> torch.Tensor:
        return torch.ops.gvirtus.remap_bilinear_u8(image, xq, yq, kernels.BORDER_ZERO).float().mean(dim=-1)


def test_a_graph_with_a_kernel_runs_on_the_backend() -> None:
    image = torch.randint(0, 256, (30, 20, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    xq, yq = _coords(9, 7, -2.0, 25.0, seed=5)
    with testing.BackendProcess(torch_threads=1) as backend:
        dev = gvirtus.connect(backend.target, token=backend.token)
        try:
            mod = dev.register_module(_Warp(), [image, xq, yq])
            far = mod(image, xq, yq)
        finally:
            dev.close()
    torch.testing.assert_close(torch.as_tensor(far), _Warp()(image, xq, yq), rtol=0, atol=0)
