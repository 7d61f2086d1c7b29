"""Stage 1 network: the segmentation generator (a U-Net that predicts the try-on parse).

State-dict layout (fixed by the published ``seg_final.pth``): ``conv1`` .. ``conv5`` encoder
blocks, then for each decoder level ``upN`` (nearest 2x upsample, conv, norm, ReLU) and ``convN``;
``conv9`` ends with a plain conv to the 13 classes. Norms are parameter-free instance norms.
"""

from __future__ import annotations

import torch
from torch import nn

from viton.vitonhd.options import SEG_EXTRA_CHANNELS, SEG_NUM_CLASSES


def _conv_norm_relu(in_ch: int, out_ch: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1), nn.InstanceNorm2d(out_ch), nn.ReLU()]


def _double_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(*_conv_norm_relu(in_ch, out_ch), *_conv_norm_relu(out_ch, out_ch))


def _up_conv(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), *_conv_norm_relu(in_ch, out_ch))


class SegGenerator(nn.Module):
    """U-Net from the 21-channel condition to a 13-class soft parse.

    Input ``x``: (B, 21, H, W) float32 with H, W divisible by 16 (256 x 192 in VITON-HD), channels in
    the order cloth mask (1), masked cloth (3), 13-class agnostic parse, pose (3), noise (1).
    Output: (B, 13, H, W) float32 in (0, 1) (per-class sigmoid, not a softmax).
    Dropout (p=0.5, on the two deepest levels) is active only in training mode.
    """

    def __init__(self, input_nc: int = SEG_NUM_CLASSES + SEG_EXTRA_CHANNELS, output_nc: int = SEG_NUM_CLASSES):
        super().__init__()
        widths = (64, 128, 256, 512, 1024)
        self.conv1 = _double_conv(input_nc, widths[0])
        self.conv2 = _double_conv(widths[0], widths[1])
        self.conv3 = _double_conv(widths[1], widths[2])
        self.conv4 = _double_conv(widths[2], widths[3])
        self.conv5 = _double_conv(widths[3], widths[4])
        # Decoder: level 6 goes back to 512 channels, ..., level 9 to 64; each concatenates the skip first.
        self.up6 = _up_conv(1024, 512)
        self.conv6 = _double_conv(1024, 512)
        self.up7 = _up_conv(512, 256)
        self.conv7 = _double_conv(512, 256)
        self.up8 = _up_conv(256, 128)
        self.conv8 = _double_conv(256, 128)
        self.up9 = _up_conv(128, 64)
        self.conv9 = nn.Sequential(*_conv_norm_relu(128, 64), *_conv_norm_relu(64, 64),
                                   nn.Conv2d(64, output_nc, kernel_size=3, padding=1))
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.conv1(x)
        e2 = self.conv2(self.pool(e1))
        e3 = self.conv3(self.pool(e2))
        e4 = self.drop(self.conv4(self.pool(e3)))
        e5 = self.drop(self.conv5(self.pool(e4)))
        d = e5
        for skip, up, conv in ((e4, self.up6, self.conv6), (e3, self.up7, self.conv7),
                               (e2, self.up8, self.conv8), (e1, self.up9, self.conv9)):
            d = conv(torch.cat((skip, up(d)), dim=1))
        return torch.sigmoid(d)
