"""Stage 3 network: the ALIAS generator that paints the try-on image at full resolution.

State-dict layout (fixed by the published ``alias_final.pth``): ``conv_0`` .. ``conv_7`` (the
input pyramid), residual blocks ``head_0``, ``G_middle_0``, ``G_middle_1``, ``up_0`` .. ``up_4``,
then ``conv_img``. Block convs use the legacy hook-based ``torch.nn.utils.spectral_norm``, whose
state is ``weight_orig`` / ``weight_u`` / ``weight_v``; in eval mode the stored u, v are used as they
are (no power iteration). Each ALIAS norm adds per-pixel noise scaled per channel before a
parameter-free norm (instance norm, or the misalignment-aware masked norm in the first five blocks),
then modulates with gamma/beta predicted from the segmentation.

Noise is drawn from an explicit ``torch.Generator`` on the activations' device, so runs are
reproducible on CPU and GPU alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from viton.vitonhd.options import ALIAS_NUM_CLASSES, ALIAS_UPSAMPLINGS

NORM_HIDDEN = 128          # width of the shared conv in each ALIAS norm
PYRAMID_CHANNELS = 16      # channels each pyramid level adds to the blocks' input
INSTANCE_NORM_EPS = 1e-5
DEFAULT_NOISE_SEED = 0     # used when forward() gets no generator


def masked_instance_norm(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Instance norm computed separately inside ``mask`` and outside it, then summed.

    Each region is normalised with its own statistics: its outside is filled with the region's mean
    (so it normalises to ~0), instance norm runs over the whole map, and the result is scaled by
    sqrt(region pixels / all pixels) to undo the dilution of the variance.

    Args:
        x: (B, C, H, W) float.
        mask: (B, 1, H, W) float in [0, 1], 1 = misaligned region.
    Returns:
        (B, C, H, W) float.
    """
    h, w = x.shape[-2:]
    out = torch.zeros_like(x)
    for region_mask in (mask, 1 - mask):
        region = x * region_mask
        count = region_mask.sum(dim=(2, 3), keepdim=True)
        count = torch.where(count == 0, torch.ones_like(count), count)
        mean = region.sum(dim=(2, 3), keepdim=True) / count
        normed = F.instance_norm(region + (1 - region_mask) * mean, eps=INSTANCE_NORM_EPS)
        out = out + normed * torch.sqrt(count / (h * w))
    return out


class AliasNorm(nn.Module):
    """Noise injection, parameter-free norm, then segmentation-conditioned modulation.

    ``forward(x, seg, mask, generator)``: x (B, C, H, W); seg (B, label_nc, H, W) one-hot-ish float;
    mask (B, 1, H, W) float or None (None = plain instance norm). Returns (B, C, H, W).
    """

    def __init__(self, channels: int, label_nc: int, masked: bool):
        super().__init__()
        self.masked = masked
        self.noise_scale = nn.Parameter(torch.zeros(channels))
        self.conv_shared = nn.Sequential(nn.Conv2d(label_nc, NORM_HIDDEN, kernel_size=3, padding=1), nn.ReLU())
        self.conv_gamma = nn.Conv2d(NORM_HIDDEN, channels, kernel_size=3, padding=1)
        self.conv_beta = nn.Conv2d(NORM_HIDDEN, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor, mask: torch.Tensor | None,
                generator: torch.Generator) -> torch.Tensor:
        b, c, h, w = x.shape
        # One draw per pixel shared by all channels, drawn (B, W, H) like the official code so the same
        # seed on CPU gives the same noise image.
        draw = torch.randn((b, w, h), generator=generator, device=x.device, dtype=x.dtype)
        noisy = x + draw.transpose(1, 2).unsqueeze(1) * self.noise_scale.view(1, c, 1, 1)
        if self.masked:
            if mask is None:
                raise ValueError("masked ALIAS norm needs the misalignment mask, got None")
            normed = masked_instance_norm(noisy, mask)
        else:
            normed = F.instance_norm(noisy, eps=INSTANCE_NORM_EPS)
        hidden = self.conv_shared(seg)
        # normed * (1 + gamma) + beta, written in place on beta's buffer: at full size each of these maps is
        # up to 272 x 1024 x 768 floats, so every temporary saved matters (autograd-safe: conv outputs are
        # not needed by their backward).
        return self.conv_beta(hidden).addcmul_(normed, self.conv_gamma(hidden)).add_(normed)


class AliasResBlock(nn.Module):
    """Residual block: norm -> LeakyReLU -> conv, twice; learned 1x1 shortcut when widths differ.

    ``forward(x, seg, mask, generator)``: seg and mask are nearest-resized to x's size first.
    """

    def __init__(self, in_ch: int, out_ch: int, label_nc: int, masked: bool):
        super().__init__()
        mid_ch = min(in_ch, out_ch)
        self.learned_shortcut = in_ch != out_ch
        self.conv_0 = spectral_norm(nn.Conv2d(in_ch, mid_ch, kernel_size=3, padding=1))
        self.conv_1 = spectral_norm(nn.Conv2d(mid_ch, out_ch, kernel_size=3, padding=1))
        if self.learned_shortcut:
            self.conv_s = spectral_norm(nn.Conv2d(in_ch, out_ch, kernel_size=1, bias=False))
        self.norm_0 = AliasNorm(in_ch, label_nc, masked)
        self.norm_1 = AliasNorm(mid_ch, label_nc, masked)
        if self.learned_shortcut:
            self.norm_s = AliasNorm(in_ch, label_nc, masked)

    def forward(self, x: torch.Tensor, seg: torch.Tensor, mask: torch.Tensor | None,
                generator: torch.Generator) -> torch.Tensor:
        size = x.shape[-2:]
        seg = F.interpolate(seg, size=size, mode="nearest")
        if mask is not None:
            mask = F.interpolate(mask, size=size, mode="nearest")
        shortcut = self.conv_s(self.norm_s(x, seg, mask, generator)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg, mask, generator), 0.2, inplace=True))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg, mask, generator), 0.2, inplace=True))
        return dx.add_(shortcut)


class ALIASGenerator(nn.Module):
    """The try-on generator.

    Inputs (full size H x W, both divisible by 2^7; 1024 x 768 for the published weights):
        x: (B, 9, H, W) in [-1, 1]: agnostic image (3), pose (3), warped cloth (3).
        seg: (B, 7, H, W) one-hot parse (float {0, 1}).
        seg_div: (B, 8, H, W) the parse with the misalignment split out as channel 7.
        misalign_mask: (B, 1, H, W) float in [0, 1].
        generator: torch.Generator on x's device for the noise; None = a fresh one seeded with
            DEFAULT_NOISE_SEED (deterministic).
    Returns:
        (B, 3, H, W) float32 RGB in [-1, 1] (tanh).
    """

    def __init__(self, input_nc: int = 9, label_nc: int = ALIAS_NUM_CLASSES, ngf: int = 64):
        super().__init__()
        self.num_upsamplings = ALIAS_UPSAMPLINGS
        self.conv_0 = nn.Conv2d(input_nc, ngf * 16, kernel_size=3, padding=1)
        for level in range(1, self.num_upsamplings + 1):
            self.add_module(f"conv_{level}", nn.Conv2d(input_nc, PYRAMID_CHANNELS, kernel_size=3, padding=1))
        extra = PYRAMID_CHANNELS
        masked_nc = label_nc + 1  # seg_div: the parse plus the misalignment channel
        self.head_0 = AliasResBlock(ngf * 16, ngf * 16, masked_nc, masked=True)
        self.G_middle_0 = AliasResBlock(ngf * 16 + extra, ngf * 16, masked_nc, masked=True)
        self.G_middle_1 = AliasResBlock(ngf * 16 + extra, ngf * 16, masked_nc, masked=True)
        self.up_0 = AliasResBlock(ngf * 16 + extra, ngf * 8, masked_nc, masked=True)
        self.up_1 = AliasResBlock(ngf * 8 + extra, ngf * 4, masked_nc, masked=True)
        self.up_2 = AliasResBlock(ngf * 4 + extra, ngf * 2, label_nc, masked=False)
        self.up_3 = AliasResBlock(ngf * 2 + extra, ngf, label_nc, masked=False)
        self.up_4 = AliasResBlock(ngf + extra, ngf // 2, label_nc, masked=False)
        self.conv_img = nn.Conv2d(ngf // 2, 3, kernel_size=3, padding=1)

    def pyramid_convs(self) -> list[nn.Module]:
        """conv_0 .. conv_7, coarse to fine."""
        return [getattr(self, f"conv_{level}") for level in range(self.num_upsamplings + 1)]

    def forward(self, x: torch.Tensor, seg: torch.Tensor, seg_div: torch.Tensor, misalign_mask: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        h, w = x.shape[-2:]
        step = 1 << self.num_upsamplings
        if h % step or w % step or h * w < 2 * step * step:
            raise ValueError(f"ALIAS input height and width must be multiples of {step} with at least two latent "
                             f"cells (instance norm needs > 1 pixel), got {h} x {w}")
        if generator is None:
            generator = torch.Generator(device=x.device).manual_seed(DEFAULT_NOISE_SEED)
        elif generator.device.type != x.device.type:
            raise ValueError(f"the noise generator is on {generator.device} but the input is on {x.device}; "
                             f"create it with torch.Generator(device=x.device)")
        sh, sw = h // step, w // step
        feats = [conv(F.interpolate(x, size=(sh << i, sw << i), mode="nearest"))
                 for i, conv in enumerate(self.pyramid_convs())]

        out = self.head_0(feats[0], seg_div, misalign_mask, generator)
        masked_blocks = (self.G_middle_0, self.G_middle_1, self.up_0, self.up_1)
        plain_blocks = (self.up_2, self.up_3, self.up_4)
        for level, block in enumerate(masked_blocks + plain_blocks, start=1):
            out = torch.cat((F.interpolate(out, scale_factor=2.0, mode="nearest"), feats[level]), dim=1)
            if level <= len(masked_blocks):
                out = block(out, seg_div, misalign_mask, generator)
            else:
                out = block(out, seg, None, generator)
        return torch.tanh(self.conv_img(F.leaky_relu(out, 0.2)))
