"""VITON-HD options: the official ``test.py`` defaults that shape the networks and tensors."""

from __future__ import annotations

from dataclasses import dataclass

# File names the official release uses inside its checkpoint folder.
CHECKPOINT_FILES: dict[str, str] = {
    "seg": "seg_final.pth",
    "gmm": "gmm_final.pth",
    "alias": "alias_final.pth",
}

# Label counts: CIHP parse in, 13 groups for the segmentation stage, 7 for ALIAS.
CIHP_NUM_LABELS = 20
SEG_NUM_CLASSES = 13
ALIAS_NUM_CLASSES = 7

# Extra channels besides the 13-class agnostic parse in the segmentation input:
# cloth mask (1) + masked cloth (3) + pose (3) + noise (1).
SEG_EXTRA_CHANNELS = 8

# ALIAS with the official `num_upsampling_layers = most`: 7 nearest 2x upsamplings (latent 8x6 at
# 1024x768). The official `normal` / `more` variants do not line up their feature pyramid, so only
# `most` exists here.
ALIAS_UPSAMPLINGS = 7


@dataclass(frozen=True)
class VitonHDOptions:
    """Options of the official inference script (defaults = the published checkpoints).

    Attributes:
        load_height, load_width: full resolution in pixels (portrait 1024 x 768).
        semantic_nc: classes of the segmentation stage (13).
        grid_size: TPS control points per side (5 -> 25 points).
        ngf: ALIAS base width (64).
        init_variance: gain of the xavier-normal init used for random weights.
    """

    load_height: int = 1024
    load_width: int = 768
    semantic_nc: int = SEG_NUM_CLASSES
    grid_size: int = 5
    ngf: int = 64
    init_variance: float = 0.02

    @property
    def stage_size(self) -> tuple[int, int]:
        """(H, W) of the segmentation and GMM stages: a quarter of the full size."""
        return self.load_height // 4, self.load_width // 4

    @property
    def full_size(self) -> tuple[int, int]:
        """(H, W) of the full resolution."""
        return self.load_height, self.load_width

    def __post_init__(self) -> None:
        # GMM: stage = full/4, features = stage/16, regression halves twice more -> full/256 cells.
        if self.load_height % 256 or self.load_width % 256 or self.load_height <= 0 or self.load_width <= 0:
            raise ValueError(
                f"load_height and load_width must be positive multiples of 256 (official 1024 x 768), "
                f"got {self.load_height} x {self.load_width}"
            )
