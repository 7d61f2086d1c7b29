"""CIHP-20 label ids, the palette VITON-HD's `image-parse/` PNGs use, and palette-PNG I/O.

Labels (uint8): 0 background, 1 hat, 2 hair, 3 glove, 4 sunglasses, 5 upper-clothes, 6 dress,
7 coat, 8 socks, 9 pants, 10 torso-skin/neck, 11 scarf, 12 skirt, 13 face, 14 left-arm,
15 right-arm, 16 left-leg, 17 right-leg, 18 left-shoe, 19 right-shoe. Left/right are the
SUBJECT's own sides (a person facing the camera has the left arm on the image's right), as in CIHP.
Arms and legs are bare skin; sleeves are upper-clothes, trouser legs are pants (CIHP semantics).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from node1.parsing.errors import InvalidParsingInput

BACKGROUND, HAT, HAIR, GLOVE, SUNGLASSES, UPPER_CLOTHES, DRESS, COAT, SOCKS, PANTS = range(10)
TORSO_SKIN, SCARF, SKIRT, FACE, LEFT_ARM, RIGHT_ARM, LEFT_LEG, RIGHT_LEG, LEFT_SHOE, RIGHT_SHOE = range(10, 20)
NUM_LABELS = 20

LABEL_NAMES = (
    "background", "hat", "hair", "glove", "sunglasses", "upper-clothes", "dress", "coat", "socks", "pants",
    "torso-skin", "scarf", "skirt", "face", "left-arm", "right-arm", "left-leg", "right-leg", "left-shoe",
    "right-shoe",
)

# The CIHP / VITON-HD palette (label k is drawn in PALETTE[k]); unused entries stay black.
PALETTE = np.array([
    (0, 0, 0), (128, 0, 0), (255, 0, 0), (0, 85, 0), (170, 0, 51), (255, 85, 0), (0, 0, 85), (0, 119, 221),
    (85, 85, 0), (0, 85, 85), (85, 51, 0), (52, 86, 128), (0, 128, 0), (0, 0, 255), (51, 170, 221),
    (0, 255, 255), (85, 255, 170), (170, 255, 85), (255, 255, 0), (255, 170, 0),
], dtype=np.uint8)


def _check_label_map(parse: np.ndarray) -> None:
    if not isinstance(parse, np.ndarray) or parse.ndim != 2 or parse.dtype != np.uint8:
        raise InvalidParsingInput(f"a parse map must be a (H, W) uint8 array, got "
                                  f"{getattr(parse, 'dtype', type(parse).__name__)} {getattr(parse, 'shape', '')}")
    if parse.size and int(parse.max()) >= NUM_LABELS:
        raise InvalidParsingInput(f"parse map holds label {int(parse.max())}; CIHP labels are 0..{NUM_LABELS - 1}")


def to_palette_image(parse: np.ndarray) -> Image.Image:
    """(H, W) uint8 CIHP labels -> a PIL "P" image whose pixel values ARE the labels."""
    _check_label_map(parse)
    img = Image.fromarray(parse, mode="P")
    pal = np.zeros((256, 3), dtype=np.uint8)
    pal[:NUM_LABELS] = PALETTE
    img.putpalette(pal.reshape(-1).tolist())
    return img


def save_parse_png(parse: np.ndarray, path: str | Path) -> None:
    """Write (H, W) uint8 CIHP labels as a palette PNG (what VITON-HD's image-parse/ holds)."""
    to_palette_image(parse).save(str(path), format="PNG")


def load_parse_png(path: str | Path) -> np.ndarray:
    """Read a palette PNG back to (H, W) uint8 labels (the pixel values, not the colours)."""
    with Image.open(path) as img:
        if img.mode not in ("P", "L"):
            raise InvalidParsingInput(f"{path}: a parse PNG must be mode 'P' (or 'L'), got {img.mode!r}")
        return np.asarray(img, dtype=np.uint8).copy()


def colorize(parse: np.ndarray) -> np.ndarray:
    """(H, W) uint8 labels -> (H, W, 3) uint8 RGB in the CIHP palette (for looking at a parse)."""
    _check_label_map(parse)
    return PALETTE[parse]
