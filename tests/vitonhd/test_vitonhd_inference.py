"""The whole VITON-HD pipeline at 1024 x 768 with random weights on CPU (one run, shared by the checks)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from viton.engine import GarmentData, PersonData, TryOnOutput
from viton.vitonhd import DeviceUnavailable, InferenceResult, VitonHDEngine, resolve_device
from viton.vitonhd.inference import gaussian_blur, seg_noise

FULL = (1024, 768)
STAGE = (256, 192)


def test_every_stage_has_the_contract_shapes(full_run: tuple[TryOnOutput, InferenceResult]) -> None:
    _, r = full_run
    shapes = {
        "seg_input": (1, 21, *STAGE), "seg_output": (1, 13, *STAGE), "parse13": (1, 13, *FULL),
        "parse": (1, 7, *FULL), "gmm_input_a": (1, 7, *STAGE), "gmm_input_b": (1, 3, *STAGE),
        "theta": (1, 50), "grid": (1, *FULL, 2), "warped_cloth": (1, 3, *FULL), "warped_cloth_mask": (1, 1, *FULL),
        "misalign_mask": (1, 1, *FULL), "parse_div": (1, 8, *FULL), "alias_input": (1, 9, *FULL),
        "output": (1, 3, *FULL),
    }
    for name, shape in shapes.items():
        t = getattr(r, name)
        assert tuple(t.shape) == shape, name
        assert t.dtype == torch.float32 and bool(torch.isfinite(t).all()), name
    assert 0 < float(r.seg_output.min()) and float(r.seg_output.max()) < 1
    assert float(r.output.abs().max()) <= 1.0
    assert float(r.theta.abs().max()) < 1.0


def test_parse_maps_are_one_hot_and_consistent(full_run: tuple[TryOnOutput, InferenceResult]) -> None:
    _, r = full_run
    for maps in (r.parse13, r.parse):
        assert set(maps.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(maps.sum(dim=1), torch.ones(1, *FULL))
    upper = r.parse[:, 2:3]
    torch.testing.assert_close(r.misalign_mask, (upper - r.warped_cloth_mask).clamp(min=0))
    torch.testing.assert_close(r.parse_div[:, :2], r.parse[:, :2])
    torch.testing.assert_close(r.parse_div[:, 2:3], upper - r.misalign_mask)
    torch.testing.assert_close(r.parse_div[:, 7:8], r.misalign_mask)
    torch.testing.assert_close(r.parse_div.sum(dim=1), torch.ones(1, *FULL))


def test_inputs_are_assembled_in_contract_order(full_run: tuple[TryOnOutput, InferenceResult]) -> None:
    _, r = full_run
    noise = r.seg_input[:, 20]
    assert set(noise.unique().tolist()) == {0.0, 1.0}
    assert abs(float(noise.mean()) - 0.159) < 0.01           # OpenCV-saturation noise: ~15.9 % ones
    assert float(r.seg_input[:, 4:17].sum(dim=1).max()) <= 1.0 + 1e-5   # bilinear average of a one-hot map
    assert float(r.seg_input[:, 7].max()) == 0.0                # 'upper' channel of the agnostic parse
    torch.testing.assert_close(r.gmm_input_a[:, :1], F.interpolate(r.parse[:, 2:3], size=STAGE, mode="nearest"))
    torch.testing.assert_close(r.alias_input[:, 6:], r.warped_cloth)
    warped = F.grid_sample(r.alias_input[:, 6:], r.grid, padding_mode="border", align_corners=False)
    assert warped.shape == (1, 3, *FULL)


def test_engine_output(full_run: tuple[TryOnOutput, InferenceResult], person: PersonData,
                       engine: VitonHDEngine) -> None:
    out, _ = full_run
    assert engine.name == "vitonhd" and engine.device == "cpu"
    assert out.image.shape == (512, 512, 3) and str(out.image.dtype) == "uint8"
    assert out.warped_garment.shape == (512, 512, 3) and str(out.warped_garment.dtype) == "uint8"
    assert out.garment_alpha.shape == (512, 512) and str(out.garment_alpha.dtype) == "float32"
    assert 0.0 <= float(out.garment_alpha.min()) and float(out.garment_alpha.max()) <= 1.0
    assert set(out.timings_ms) == {"adapter", "seg", "gmm", "alias", "postprocess", "total"}
    assert all(v >= 0 for v in out.timings_ms.values())


def test_gaussian_blur_matches_a_direct_2d_kernel() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 3, 40, 30)
    taps = torch.tensor([math.exp(-((i - 7) ** 2) / 18.0) for i in range(15)])
    kernel2d = torch.outer(taps, taps) / taps.sum() ** 2
    direct = F.conv2d(x, kernel2d.expand(3, 1, 15, 15), padding=7, groups=3)
    torch.testing.assert_close(gaussian_blur(x), direct, atol=1e-6, rtol=0)


def test_seg_noise_is_seeded() -> None:
    cpu = torch.device("cpu")
    a = seg_noise((1, 1, 64, 48), torch.Generator().manual_seed(5), cpu)
    b = seg_noise((1, 1, 64, 48), torch.Generator().manual_seed(5), cpu)
    assert torch.equal(a, b)
    assert not torch.equal(a, seg_noise((1, 1, 64, 48), torch.Generator().manual_seed(6), cpu))


def test_device_resolution() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceUnavailable, match="not supported"):
        resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable, match="CUDA is not available"):
            resolve_device("cuda:0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_pipeline_on_gpu_is_reproducible(nets: dict[str, nn.Module], person: PersonData,
                                         garment: GarmentData) -> None:
    import copy

    gpu_engine = VitonHDEngine({k: copy.deepcopy(v) for k, v in nets.items()}, "cuda", seed=7)
    first, r1 = gpu_engine.try_on_detailed(person, garment)
    second, r2 = gpu_engine.try_on_detailed(person, garment)
    assert r1.output.device.type == "cuda"
    assert (first.image == second.image).all()
