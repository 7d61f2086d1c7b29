"""node1.parsing.geometry: the in-place segment distance keeps the out-of-place formula's every bit."""

from __future__ import annotations

import torch
from torch.fx.experimental.proxy_tensor import make_fx

from node1.parsing.geometry import EPS, pixel_grid, segment_distance_sq


def _reference(gx: torch.Tensor, gy: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The textbook form, one fresh tensor per step (what segment_distance_sq computed before session 3)."""
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    abx, aby = (b[:, 0] - a[:, 0])[:, None, None], (b[:, 1] - a[:, 1])[:, None, None]
    dx, dy = gx[None] - ax, gy[None] - ay
    t = ((dx * abx + dy * aby) / (abx * abx + aby * aby + EPS)).clamp(0.0, 1.0)
    ex, ey = dx - t * abx, dy - t * aby
    return ex * ex + ey * ey


def test_segment_distance_is_bit_identical_to_the_textbook_form() -> None:
    gx, gy = pixel_grid(64, 48, 4.0, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(12, 2, generator=g) * 250 - 30, torch.rand(12, 2, generator=g) * 250 - 30
    b[3] = a[3]  # a degenerate segment: the distance to a point
    got = segment_distance_sq(gx, gy, a, b)
    assert got.shape == (12, 64, 48) and got.dtype == torch.float32
    assert torch.equal(got, _reference(gx, gy, a, b))


def test_segment_distance_values() -> None:
    gx, gy = torch.tensor([[0.0, 5.0, 20.0]]), torch.tensor([[3.0, -4.0, 0.0]])
    a, b = torch.tensor([[0.0, 0.0]]), torch.tensor([[10.0, 0.0]])
    # above the segment's middle: 3^2; below it: 4^2; past the end (clamped to b): 10^2
    assert segment_distance_sq(gx, gy, a, b).tolist() == [[[9.0, 16.0, 100.0]]]


def test_segment_distance_traces_for_gvirtus() -> None:
    gx, gy = pixel_grid(8, 6, 4.0, torch.device("cpu"))
    a, b = torch.tensor([[1.0, 2.0], [5.0, 5.0]]), torch.tensor([[9.0, 20.0], [5.0, 5.0]])
    traced = make_fx(segment_distance_sq)(gx, gy, a, b)
    assert torch.equal(traced(gx, gy, a, b), _reference(gx, gy, a, b))
