"""Building the three VITON-HD networks with the official options, and describing their state."""

from __future__ import annotations

import torch
from torch import nn

from viton.vitonhd.alias import ALIASGenerator
from viton.vitonhd.gmm import GMM
from viton.vitonhd.options import ALIAS_NUM_CLASSES, SEG_EXTRA_CHANNELS, VitonHDOptions
from viton.vitonhd.seg import SegGenerator

NETWORK_NAMES: tuple[str, ...] = ("seg", "gmm", "alias")
GMM_INPUT_A_NC = 7    # upper-cloth parse channel (1) + pose (3) + agnostic image (3)
GMM_INPUT_B_NC = 3    # cloth RGB
ALIAS_INPUT_NC = 9    # agnostic image (3) + pose (3) + warped cloth (3)
SPECTRAL_WARMUP_ITERS = 15  # power iterations that make random weight_u/v meaningful (random init only)


def build_networks(options: VitonHDOptions | None = None, *, initialize: bool = True) -> dict[str, nn.Module]:
    """The three networks with the official constructor arguments, on CPU, in eval mode.

    Args:
        options: resolution and widths; defaults are those of the published checkpoints.
        initialize: True draws random weights like the official training init (xavier-normal with
            gain ``init_variance`` for seg and ALIAS convs, N(0, 0.02) for GMM extractor convs) and
            runs a few spectral-norm power iterations so random ALIAS weights are well scaled.
            False keeps PyTorch's default init: cheaper when a checkpoint overwrites everything.
    Returns:
        {'seg': SegGenerator, 'gmm': GMM, 'alias': ALIASGenerator}; each ``state_dict()`` has exactly
        the keys, shapes and dtypes of the official checkpoint.
    """
    opt = options or VitonHDOptions()
    gmm = GMM(GMM_INPUT_A_NC, GMM_INPUT_B_NC, grid_size=opt.grid_size, full_size=opt.full_size)
    nets: dict[str, nn.Module] = {
        "seg": SegGenerator(input_nc=opt.semantic_nc + SEG_EXTRA_CHANNELS, output_nc=opt.semantic_nc),
        "gmm": gmm,
        "alias": ALIASGenerator(ALIAS_INPUT_NC, label_nc=ALIAS_NUM_CLASSES, ngf=opt.ngf),
    }
    if initialize:
        with torch.no_grad():
            _xavier_init(nets["seg"], opt.init_variance)
            _xavier_init(nets["alias"], opt.init_variance)
            _normal_init(gmm.extractionA, 0.02)
            _normal_init(gmm.extractionB, 0.02)
            _warm_spectral_norm(nets["alias"], SPECTRAL_WARMUP_ITERS)
    for net in nets.values():
        net.eval()
    return nets


def state_dict_signature(module: nn.Module) -> list[tuple[str, tuple[int, ...], str]]:
    """[(key, shape, dtype name)] of ``module.state_dict()`` in order, e.g. ('conv_img.bias', (3,), 'float32')."""
    return [(k, tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in module.state_dict().items()]


def _weight_of(m: nn.Module) -> torch.Tensor | None:
    w = getattr(m, "weight_orig", None)
    if w is None:
        w = getattr(m, "weight", None)
    return w if isinstance(w, torch.Tensor) else None


def _zero_bias(m: nn.Module) -> None:
    bias = getattr(m, "bias", None)
    if isinstance(bias, torch.Tensor):
        bias.zero_()


def _xavier_init(net: nn.Module, gain: float) -> None:
    for m in net.modules():
        w = _weight_of(m)
        if isinstance(m, nn.Conv2d | nn.Linear) and w is not None:
            nn.init.xavier_normal_(w, gain=gain)
            _zero_bias(m)


def _normal_init(net: nn.Module, std: float) -> None:
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            _zero_bias(m)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            _zero_bias(m)


def _warm_spectral_norm(net: nn.Module, iters: int) -> None:
    """Power-iterate the stored u, v of every spectrally normalised conv toward the top singular pair."""
    for m in net.modules():
        w_orig, u, v = (getattr(m, name, None) for name in ("weight_orig", "weight_u", "weight_v"))
        if not (isinstance(w_orig, torch.Tensor) and isinstance(u, torch.Tensor) and isinstance(v, torch.Tensor)):
            continue
        mat = w_orig.flatten(1)
        for _ in range(iters):
            v.copy_(nn.functional.normalize(mat.T @ u, dim=0))
            u.copy_(nn.functional.normalize(mat @ v, dim=0))
