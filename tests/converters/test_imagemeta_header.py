"""Stored size and EXIF orientation read from the first bytes of an image."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from converters.imagemeta import image_meta_from_header


def encoded(fmt: str, size: tuple[int, int], orientation: int = 1) -> bytes:
    image = Image.new("RGB", size, (10, 200, 30))
    buf = io.BytesIO()
    kwargs = {}
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_orientation_and_stored_size_from_the_first_kilobytes(orientation: int) -> None:
    data = encoded("JPEG", (1200, 800), orientation)
    meta = image_meta_from_header(data[:4096])
    assert meta is not None
    assert (meta.width, meta.height, meta.orientation, meta.format) == (1200, 800, orientation, "jpeg")


def test_png() -> None:
    meta = image_meta_from_header(encoded("PNG", (33, 44))[:1024])
    assert meta is not None and (meta.width, meta.height, meta.format) == (33, 44, "png")


@pytest.mark.parametrize("head", [b"", b"not an image at all", b"\xff\xd8\xff\xe0" + b"\x00" * 10])
def test_bytes_that_do_not_say_give_none(head: bytes) -> None:
    assert image_meta_from_header(head) is None
