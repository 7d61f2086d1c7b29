"""The three-stage VITON-HD inference glue: segmentation -> GMM warp -> ALIAS synthesis.

Every tensor is batch-first on one device; the random draws (segmentation noise, ALIAS noise)
come from seeded ``torch.Generator`` objects on that device, so a run is reproducible.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from viton.vitonhd.adapter import VitonHDInputs
from viton.vitonhd.labels import ALIAS7_UPPER, seg13_to_alias7
from viton.vitonhd.options import VitonHDOptions

BLUR_KERNEL = 15            # Gaussian smoothing of the upsampled parse: 15 x 15 taps, sigma 3 px
BLUR_SIGMA = 3.0
# The official noise map is OpenCV randn(mean 0, std 255) saturated to uint8 and integer-divided by
# 255: a pixel is 1 exactly when the draw rounds to >= 255, i.e. N(0, 1) >= 254.5 / 255 (p ~ 0.159).
SEG_NOISE_THRESHOLD = 254.5 / 255.0


def seg_noise(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """(B, 1, h, w) float32 binary {0, 1} noise map, ~15.9 % ones (the official map's distribution)."""
    draw = torch.randn(shape, generator=generator, device=device)
    return (draw >= SEG_NOISE_THRESHOLD).float()


def gaussian_blur(maps: torch.Tensor, kernel: int = BLUR_KERNEL, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Depthwise normalised Gaussian blur with zero padding (kernel // 2), separable; (B, C, H, W) -> same."""
    taps = torch.tensor([math.exp(-((i - kernel // 2) ** 2) / (2 * sigma**2)) for i in range(kernel)],
                        dtype=maps.dtype, device=maps.device)
    taps = taps / taps.sum()
    c = maps.shape[1]
    out = F.conv2d(maps, taps.view(1, 1, kernel, 1).expand(c, 1, kernel, 1), padding=(kernel // 2, 0), groups=c)
    return F.conv2d(out, taps.view(1, 1, 1, kernel).expand(c, 1, 1, kernel), padding=(0, kernel // 2), groups=c)


def onehot_argmax(scores: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) scores -> (B, C, H, W) float one-hot of the per-pixel argmax."""
    return torch.zeros_like(scores).scatter_(1, scores.argmax(dim=1, keepdim=True), 1.0)


@dataclass
class InferenceResult:
    """Every intermediate of one run (B = 1 from the adapter), full size H x W, stage size h x w = H/4 x W/4.

    Attributes:
        seg_input: (B, 21, h, w). seg_output: (B, 13, h, w) in (0, 1).
        parse13: (B, 13, H, W) one-hot. parse: (B, 7, H, W) one-hot.
        gmm_input_a: (B, 7, h, w). gmm_input_b: (B, 3, h, w). theta: (B, 50) in (-1, 1).
        grid: (B, H, W, 2) (x, y) sampling grid. warped_cloth: (B, 3, H, W) in [-1, 1].
        warped_cloth_mask: (B, 1, H, W) in [0, 1]. misalign_mask: (B, 1, H, W) in [0, 1].
        parse_div: (B, 8, H, W). alias_input: (B, 9, H, W). output: (B, 3, H, W) in [-1, 1].
        timings_ms: 'seg', 'gmm', 'alias' milliseconds (device-synchronised).
    """

    seg_input: torch.Tensor
    seg_output: torch.Tensor
    parse13: torch.Tensor
    parse: torch.Tensor
    gmm_input_a: torch.Tensor
    gmm_input_b: torch.Tensor
    theta: torch.Tensor
    grid: torch.Tensor
    warped_cloth: torch.Tensor
    warped_cloth_mask: torch.Tensor
    misalign_mask: torch.Tensor
    parse_div: torch.Tensor
    alias_input: torch.Tensor
    output: torch.Tensor
    timings_ms: dict[str, float] = field(default_factory=dict)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def segment(seg: nn.Module, inputs: VitonHDInputs, options: VitonHDOptions,
            generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Stage 1: -> (seg_input (B,21,h,w), seg_output (B,13,h,w), parse13 (B,13,H,W), parse (B,7,H,W)).

    Downsampling is bilinear; the prediction is upsampled bilinearly, blurred, arg-maxed and remapped 13 -> 7.
    """
    small = options.stage_size
    cm, c = inputs.cloth_mask, inputs.cloth

    def down(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, size=small, mode="bilinear", align_corners=False)

    cm_down = down(cm)
    seg_input = torch.cat((cm_down, down(c * cm), down(inputs.parse_agnostic), down(inputs.pose),
                           seg_noise(tuple(cm_down.shape), generator, cm_down.device)), dim=1)
    seg_output = seg(seg_input)
    upsampled = F.interpolate(seg_output, size=options.full_size, mode="bilinear", align_corners=False)
    parse13 = onehot_argmax(gaussian_blur(upsampled))
    return seg_input, seg_output, parse13, seg13_to_alias7(parse13)


def warp_cloth(gmm: nn.Module, inputs: VitonHDInputs, parse: torch.Tensor,
               options: VitonHDOptions) -> tuple[torch.Tensor, ...]:
    """Stage 2: -> (input_a, input_b, theta, grid, warped_cloth, warped_cloth_mask).

    Inputs are nearest-downsampled to the stage size; the grid is applied at full size (bilinear, border).
    """
    small = options.stage_size

    def down(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, size=small, mode="nearest")

    input_a = torch.cat((down(parse[:, ALIAS7_UPPER:ALIAS7_UPPER + 1]), down(inputs.pose),
                         down(inputs.img_agnostic)), dim=1)
    input_b = down(inputs.cloth)
    theta, grid = gmm(input_a, input_b)
    warped_cloth = F.grid_sample(inputs.cloth, grid, mode="bilinear", padding_mode="border", align_corners=False)
    warped_mask = F.grid_sample(inputs.cloth_mask, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return input_a, input_b, theta, grid, warped_cloth, warped_mask


def synthesize(alias: nn.Module, inputs: VitonHDInputs, parse: torch.Tensor, warped_cloth: torch.Tensor,
               warped_mask: torch.Tensor, *, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Stage 3: -> (misalign_mask, parse_div, alias_input, output)."""
    upper = parse[:, ALIAS7_UPPER:ALIAS7_UPPER + 1]
    misalign = (upper - warped_mask).clamp(min=0.0)
    parse_div = torch.cat((parse, misalign), dim=1)
    parse_div[:, ALIAS7_UPPER:ALIAS7_UPPER + 1] -= misalign
    alias_input = torch.cat((inputs.img_agnostic, inputs.pose, warped_cloth), dim=1)
    output = alias(alias_input, parse, parse_div, misalign, generator=generator)
    return misalign, parse_div, alias_input, output


def run_inference(nets: dict[str, nn.Module], inputs: VitonHDInputs, options: VitonHDOptions,
                 seed: int) -> InferenceResult:
    """All three stages on ``inputs`` (already on the networks' device); call under torch.inference_mode().

    The segmentation noise and the ALIAS noise each get their own generator on the device, seeded with
    ``seed``: on CPU the ALIAS noise then equals that of an official ALIAS forward run right after
    ``torch.manual_seed(seed)``.
    """
    device = inputs.cloth.device
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    seg_input, seg_output, parse13, parse = segment(nets["seg"], inputs, options,
                                                    torch.Generator(device=device).manual_seed(seed))
    _sync(device)
    t1 = time.perf_counter()
    input_a, input_b, theta, grid, warped_cloth, warped_mask = warp_cloth(nets["gmm"], inputs, parse, options)
    _sync(device)
    t2 = time.perf_counter()
    misalign, parse_div, alias_input, output = synthesize(nets["alias"], inputs, parse, warped_cloth, warped_mask,
                                                          generator=torch.Generator(device=device).manual_seed(seed))
    _sync(device)
    t3 = time.perf_counter()
    timings.update(seg=(t1 - t0) * 1e3, gmm=(t2 - t1) * 1e3, alias=(t3 - t2) * 1e3)
    return InferenceResult(seg_input=seg_input, seg_output=seg_output, parse13=parse13, parse=parse,
                          gmm_input_a=input_a, gmm_input_b=input_b, theta=theta, grid=grid,
                          warped_cloth=warped_cloth, warped_cloth_mask=warped_mask, misalign_mask=misalign,
                          parse_div=parse_div, alias_input=alias_input, output=output, timings_ms=timings)
