"""Decoding uploaded images safely: the boundary between untrusted bytes and the runner.

`decode_upload(data, max_bytes, max_side)` returns (H, W, 3) uint8 RGB with EXIF orientation
applied, or raises one of node1.tryon.interface's UploadError subclasses naming what was wrong:

    0 bytes                                  -> EmptyUpload
    more than max_bytes                      -> UploadTooLarge
    not JPEG / PNG / WebP (by magic bytes)   -> UnsupportedImageType
    header claims a side over max_side       -> ImageTooLarge      (checked before any pixel is decoded)
    header claims far more pixels than that  -> DecompressionBomb  (also PIL's own bomb guard, kept ON)
    truncated / undecodable                  -> CorruptImage

Only the first frame of an animated PNG/WebP is used. Alpha is composited onto white.
`encode_jpeg` turns an RGB array into JPEG bytes for results.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps

from node1.tryon import (
    RESULT_JPEG_QUALITY,
    CorruptImage,
    DecompressionBomb,
    EmptyUpload,
    ImageTooLarge,
    UnsupportedImageType,
    UploadTooLarge,
)

MIB = 1024 * 1024
# Header dimensions beyond this multiple of the allowed pixel count are a decompression bomb
# (a tiny file claiming e.g. 20000x20000), not merely a too-large photo.
BOMB_PIXEL_FACTOR = 4
PICTURE_ONLY_SEGMENTS = {"APP0", "APP2", "APP14"}   # JFIF, ICC profile, Adobe: how to decode, not who or where

# (magic prefix, offset, format name as PIL reports it)
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"WEBP", 8, "WEBP"),
)
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")


def decodes_as_is(data: bytes) -> bool:
    """Whether the file itself may stand for decode_upload(data): a JPEG whose pixels are RGB (YCbCr), which
    decode_upload neither rotates nor converts, and which carries nothing but its picture: no EXIF (a
    phone's location, its camera, the orientation), no XMP, IPTC or comment; only the segments that say
    how to decode it (JFIF, an ICC profile, Adobe's colour transform). Then the try-on runner may send the
    file to node 2 instead of the pixels (TryOnRunner.run's `source`), and node 2 learns nothing the pixels
    would not have told it. A browser's webcam snapshot is such a file. Reads the header only."""
    if sniff_format(data) != "JPEG":
        return False
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG"]) as img:
            segments = {marker for marker, _ in getattr(img, "applist", [])}
            return img.mode == "RGB" and segments <= PICTURE_ONLY_SEGMENTS
    except (OSError, SyntaxError, ValueError, Image.UnidentifiedImageError):
        return False


def sniff_format(data: bytes) -> str | None:
    """'JPEG', 'PNG' or 'WEBP' from the magic bytes, else None."""
    for magic, offset, name in _MAGIC:
        if data[offset:offset + len(magic)] == magic and (name != "WEBP" or data[:4] == b"RIFF"):
            return name
    return None


def _describe_head(data: bytes) -> str:
    head = data[:8]
    return head.hex(" ") if any(b < 32 or b > 126 for b in head) else repr(head.decode("ascii"))


def decode_upload(data: bytes, max_bytes: int, max_side: int) -> np.ndarray:
    """Decode an uploaded photo.

    Args:
        data: the raw upload.
        max_bytes: refuse more bytes than this (limits.upload_max_mb * 2**20).
        max_side: refuse images whose width or height exceeds this (limits.image_max_side).

    Returns:
        (H, W, 3) uint8 RGB, rows top to bottom as the photo is meant to be seen (EXIF applied).

    Raises:
        EmptyUpload, UploadTooLarge, UnsupportedImageType, ImageTooLarge, DecompressionBomb,
        CorruptImage.
    """
    if not data:
        raise EmptyUpload()
    if len(data) > max_bytes:
        raise UploadTooLarge(f"the upload is {len(data) / MIB:.1f} MB; the limit is {max_bytes / MIB:.0f} MB")
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedImageType(f"the upload is not a JPEG, PNG or WebP image (it starts with "
                                   f"{_describe_head(data)}); send a photo in one of those formats")
    max_pixels = max_side * max_side
    try:
        with warnings.catch_warnings():
            # PIL warns (then errors) on huge images; make its warning an error as well.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt])
            w, h = img.size
            if w * h > BOMB_PIXEL_FACTOR * max_pixels:
                raise DecompressionBomb(f"the image header claims {w}x{h} pixels ({w * h / 1e6:.0f} megapixels) "
                                        f"in a {len(data)} byte file; the limit is {max_side}x{max_side}")
            if w > max_side or h > max_side:
                raise ImageTooLarge(f"the image is {w}x{h}; the largest side allowed is {max_side} pixels "
                                    "(scale the photo down and try again)")
            if w < 1 or h < 1:
                raise CorruptImage(f"the image header claims {w}x{h} pixels")
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img) or img  # type: ignore[assignment]
            rgb = _to_rgb(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecompressionBomb(f"the image decompresses to far too many pixels for its {len(data)} bytes ({exc}); "
                                f"the limit is {max_side}x{max_side}") from exc
    except (OSError, SyntaxError, ValueError, EOFError, Image.UnidentifiedImageError) as exc:
        raise CorruptImage(f"the {fmt} image is truncated or damaged and cannot be decoded ({exc}); "
                           "take the photo again or export it anew") from exc
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise CorruptImage(f"decoded image has shape {arr.shape}, expected (H, W, 3)")
    return np.ascontiguousarray(arr)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale PNG: scale to 8 bits instead of clipping.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
        grey = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def encode_jpeg(image: np.ndarray, quality: int = RESULT_JPEG_QUALITY) -> bytes:
    """JPEG bytes of (H, W, 3) uint8 RGB."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"encode_jpeg expects (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
