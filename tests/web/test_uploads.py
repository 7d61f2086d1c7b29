"""node1.web.uploads: what uploads are accepted, and the typed error for each kind of bad one."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from node1.tryon import (
    CorruptImage,
    DecompressionBomb,
    EmptyUpload,
    ImageTooLarge,
    UnsupportedImageType,
    UploadTooLarge,
)
from node1.web.uploads import decode_upload, decodes_as_is, encode_jpeg, sniff_format
from tests.web.conftest import encode

MB = 1024 * 1024
MAX_SIDE = 4096


def png_header_claiming(w: int, h: int) -> bytes:
    """A valid-looking PNG whose IHDR claims w x h RGB pixels, with a tiny IDAT."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_jpeg_png_webp_decode_to_rgb(astronaut):
    for fmt, kw in (("JPEG", {"quality": 95}), ("PNG", {}), ("WEBP", {"quality": 95})):
        data = encode(astronaut, fmt, **kw)
        assert sniff_format(data) == fmt
        out = decode_upload(data, 10 * MB, MAX_SIDE)
        assert out.shape == (512, 512, 3) and out.dtype == np.uint8
        assert np.abs(out.astype(int) - astronaut).mean() < 4.0


def test_exif_orientation_is_applied(astronaut):
    # Stored rotated; EXIF Orientation=6 says "rotate 90 CW to display" -> we must get the upright photo.
    stored = np.ascontiguousarray(np.rot90(astronaut, k=1))   # 90 CCW
    exif = Image.Exif()
    exif[0x0112] = 6
    img = Image.fromarray(stored)
    import io
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    out = decode_upload(buf.getvalue(), 10 * MB, MAX_SIDE)
    assert out.shape == astronaut.shape
    assert np.abs(out.astype(int) - astronaut).mean() < 4.0


def test_alpha_is_composited_on_white():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:4, :, 3] = 255          # top half opaque red, bottom transparent
    out = decode_upload(encode(rgba, "PNG"), MB, MAX_SIDE)
    assert (out[:4] == [255, 0, 0]).all() and (out[4:] == 255).all()


def test_grey_16bit_png_is_scaled_not_clipped():
    grey = np.full((4, 4), 65535 // 2, np.uint16)
    out = decode_upload(encode(grey, "PNG"), MB, MAX_SIDE)
    assert out.shape == (4, 4, 3) and abs(int(out[0, 0, 0]) - 127) <= 1


def test_empty_upload():
    with pytest.raises(EmptyUpload, match="0 bytes"):
        decode_upload(b"", MB, MAX_SIDE)


def test_not_an_image_names_what_it_starts_with():
    with pytest.raises(UnsupportedImageType, match="JPEG, PNG or WebP.*'hello wo'"):
        decode_upload(b"hello world, not an image", MB, MAX_SIDE)


def test_gif_is_refused(astronaut):
    with pytest.raises(UnsupportedImageType):
        decode_upload(encode(astronaut, "GIF"), MB, MAX_SIDE)


def test_truncated_jpeg(astronaut_jpeg):
    with pytest.raises(CorruptImage, match="truncated or damaged"):
        decode_upload(astronaut_jpeg[: len(astronaut_jpeg) // 2], MB, MAX_SIDE)


def test_png_claiming_20000_squared_is_a_bomb_refused_before_decoding():
    data = png_header_claiming(20000, 20000)
    assert len(data) < 200
    with pytest.raises(DecompressionBomb, match="400000000 pixels.*limit is 4096x4096"):
        decode_upload(data, MB, MAX_SIDE)
    # 9000x9000 passes PIL's own guard; ours (4x the allowed pixels) still calls it a bomb.
    with pytest.raises(DecompressionBomb, match="9000x9000"):
        decode_upload(png_header_claiming(9000, 9000), MB, MAX_SIDE)


def test_side_over_limit(astronaut):
    wide = np.zeros((10, 5000, 3), np.uint8)
    with pytest.raises(ImageTooLarge, match="5000x10.*4096"):
        decode_upload(encode(wide, "PNG"), MB, MAX_SIDE)
    with pytest.raises(ImageTooLarge, match="512x512.*256"):
        decode_upload(encode(astronaut, "PNG"), MB, 256)


def test_byte_limit(astronaut):
    data = encode(astronaut, "PNG")
    with pytest.raises(UploadTooLarge, match="limit is 0 MB|the limit is"):
        decode_upload(data, len(data) - 1, MAX_SIDE)


def test_garbage_after_valid_magic():
    with pytest.raises(CorruptImage):
        decode_upload(b"\xff\xd8\xff\xe0" + b"\x00" * 100, MB, MAX_SIDE)
    with pytest.raises(CorruptImage):
        decode_upload(b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x01" * 20, MB, MAX_SIDE)


def test_encode_jpeg_checks_its_input(astronaut):
    assert encode_jpeg(astronaut)[:3] == b"\xff\xd8\xff"
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        encode_jpeg(astronaut.astype(np.float32))


def _saved(rgb_or_grey: np.ndarray, fmt: str, **kw: object) -> bytes:
    import io
    buf = io.BytesIO()
    Image.fromarray(rgb_or_grey).save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_a_plain_rgb_jpeg_decodes_as_is_and_may_stand_for_its_pixels(astronaut):
    """decodes_as_is: the upload itself may travel to node 2 instead of the pixels, which it then decodes
    to exactly what decode_upload gave (TryOnRunner.run's source)."""
    import io
    for data in (_saved(astronaut, "JPEG", quality=90), _saved(astronaut, "JPEG", progressive=True),
                 _saved(astronaut, "JPEG", subsampling=0)):
        assert decodes_as_is(data)
        np.testing.assert_array_equal(decode_upload(data, 10 * MB, MAX_SIDE),
                                      np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    rotated = Image.Exif()
    rotated[0x0112] = 6
    assert not decodes_as_is(_saved(astronaut, "JPEG", exif=rotated.tobytes()))   # decode_upload turns it
    located = Image.Exif()
    located[0x010F] = "PhoneMaker"                                   # any EXIF (a camera, a GPS position)
    assert not decodes_as_is(_saved(astronaut, "JPEG", exif=located.tobytes()))   # stays on node 1
    assert not decodes_as_is(_saved(astronaut, "JPEG", comment=b"alice at home"))
    assert not decodes_as_is(_saved(astronaut[..., 0], "JPEG"))                     # grey: converted to RGB
    assert not decodes_as_is(_saved(astronaut, "PNG"))
    assert not decodes_as_is(b"\xff\xd8\xff" + b"\x00" * 40)                        # a broken header
