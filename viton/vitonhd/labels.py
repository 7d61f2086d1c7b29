"""Label spaces of VITON-HD and the remaps between them (CIHP 20 -> 13 -> 7).

Each remap sums one-hot channels into groups; since every source label belongs to exactly one group
it is also a lookup table, which is how it is stored here (index = source label, value = group).
"""

from __future__ import annotations

import numpy as np
import torch

from viton.vitonhd.options import ALIAS_NUM_CLASSES, CIHP_NUM_LABELS, SEG_NUM_CLASSES

# CIHP ids (our parse, see DESIGN.md).
CIHP_BACKGROUND, CIHP_HAT, CIHP_HAIR, CIHP_GLOVE, CIHP_SUNGLASSES = 0, 1, 2, 3, 4
CIHP_UPPER_CLOTHES, CIHP_DRESS, CIHP_COAT, CIHP_SOCKS, CIHP_PANTS = 5, 6, 7, 8, 9
CIHP_TORSO_SKIN, CIHP_SCARF, CIHP_SKIRT, CIHP_FACE = 10, 11, 12, 13
CIHP_LEFT_ARM, CIHP_RIGHT_ARM, CIHP_LEFT_LEG, CIHP_RIGHT_LEG = 14, 15, 16, 17
CIHP_LEFT_SHOE, CIHP_RIGHT_SHOE = 18, 19

# Labels the cloth-agnostic image keeps from the original photo.
CIHP_HEAD = (CIHP_SUNGLASSES, CIHP_FACE)
CIHP_LOWER_BODY = (CIHP_PANTS, CIHP_SKIRT, CIHP_LEFT_LEG, CIHP_RIGHT_LEG, CIHP_LEFT_SHOE, CIHP_RIGHT_SHOE)
# Labels the agnostic parse removes everywhere (the garment region to be replaced).
CIHP_UPPER = (CIHP_UPPER_CLOTHES, CIHP_DRESS, CIHP_COAT)

# 13 groups used by the segmentation stage: (name, CIHP labels).
SEG13_GROUPS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("background", (CIHP_BACKGROUND, CIHP_TORSO_SKIN)),
    ("hair", (CIHP_HAT, CIHP_HAIR)),
    ("face", (CIHP_SUNGLASSES, CIHP_FACE)),
    ("upper", CIHP_UPPER),
    ("bottom", (CIHP_PANTS, CIHP_SKIRT)),
    ("left_arm", (CIHP_LEFT_ARM,)),
    ("right_arm", (CIHP_RIGHT_ARM,)),
    ("left_leg", (CIHP_LEFT_LEG,)),
    ("right_leg", (CIHP_RIGHT_LEG,)),
    ("left_shoe", (CIHP_LEFT_SHOE,)),
    ("right_shoe", (CIHP_RIGHT_SHOE,)),
    ("socks", (CIHP_SOCKS,)),
    ("noise", (CIHP_GLOVE, CIHP_SCARF)),
)
SEG13_UPPER = 3

# 7 groups used by GMM and ALIAS: (name, 13-class indices).
ALIAS7_GROUPS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("background", (0,)),
    ("paste", (2, 4, 7, 8, 9, 10, 11)),
    ("upper", (3,)),
    ("hair", (1,)),
    ("left_arm", (5,)),
    ("right_arm", (6,)),
    ("noise", (12,)),
)
ALIAS7_UPPER = 2


def _lookup(groups: tuple[tuple[str, tuple[int, ...]], ...], num_src: int) -> tuple[int, ...]:
    table = [-1] * num_src
    for dst, (_, srcs) in enumerate(groups):
        for src in srcs:
            table[src] = dst
    if min(table) < 0:
        raise RuntimeError(f"label groups leave source labels unmapped: {table}")
    return tuple(table)


CIHP_TO_SEG13: tuple[int, ...] = _lookup(SEG13_GROUPS, CIHP_NUM_LABELS)
SEG13_TO_ALIAS7: tuple[int, ...] = _lookup(ALIAS7_GROUPS, SEG_NUM_CLASSES)


def cihp_to_seg13_onehot(parse: np.ndarray) -> torch.Tensor:
    """(H, W) uint8 CIHP labels (all < 20) -> (1, 13, H, W) float32 one-hot {0, 1}."""
    groups = np.asarray(CIHP_TO_SEG13, dtype=np.int64)[parse]
    onehot = torch.zeros((1, SEG_NUM_CLASSES, *parse.shape), dtype=torch.float32)
    onehot.scatter_(1, torch.from_numpy(groups)[None, None], 1.0)
    return onehot


def remap_channels(maps: torch.Tensor, table: tuple[int, ...], out_channels: int) -> torch.Tensor:
    """Sum channels into groups: (B, len(table), H, W) -> (B, out_channels, H, W); channel c goes to table[c]."""
    index = torch.tensor(table, device=maps.device)
    out = maps.new_zeros((maps.shape[0], out_channels, *maps.shape[2:]))
    return out.index_add_(1, index, maps)


def seg13_to_alias7(maps: torch.Tensor) -> torch.Tensor:
    """(B, 13, H, W) -> (B, 7, H, W) by summing the 13 classes into ALIAS7_GROUPS."""
    return remap_channels(maps, SEG13_TO_ALIAS7, ALIAS_NUM_CLASSES)
