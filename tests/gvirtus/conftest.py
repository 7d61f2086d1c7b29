"""Fixtures: a real `python -m gvirtus.backend` on a loopback port, and sessions on it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

import gvirtus
from gvirtus.testing import BackendProcess

torch.set_num_threads(1)
QUOTA_MB = 64
ROOT_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def backend() -> Iterator[BackendProcess]:
    """One backend shared by the tests that do not need a private one (quota QUOTA_MB). Its device is
    VM_TEST_GVIRTUS_DEVICE (default cpu): `VM_TEST_GVIRTUS_DEVICE=cuda` runs the suite against a CUDA backend
    on a GPU machine (scripts/gpu_session.sh; tests that check the CPU backend's log line then fail by design)."""
    device = os.environ.get("VM_TEST_GVIRTUS_DEVICE", "cpu")
    with BackendProcess(quota_mb=QUOTA_MB, session_timeout_s=5.0, device=device) as b:
        yield b


@pytest.fixture
def dev(backend: BackendProcess) -> Iterator[gvirtus.RemoteDevice]:
    d = gvirtus.connect(backend.target, token=backend.token, timeout_s=20.0)
    yield d
    d.close()


class ConvNet(nn.Module):
    """A small conv net: (B, 3, H, W) float32 -> (B, 8, H/2, W/2)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.c2 = nn.Conv2d(16, 8, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c2(torch.relu(self.bn(self.c1(x))))


def make_convnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = ConvNet().eval()
    with torch.no_grad():   # non-trivial running stats so batch norm matters
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    return net
