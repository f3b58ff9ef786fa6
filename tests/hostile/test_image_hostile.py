"""Hostile images: ``image_meta_from_header`` and the publisher's ``ImageMetaCache`` give None (or facts
the validator turns into ``ERROR_INVALID_IMAGE``), never an exception, in bounded memory.

The cases: a PNG decompression bomb (a 560 KB file of 12,000 x 12,000 pixels, and a header claiming
100,000 x 100,000), a truncated JPEG, a PNG whose EXIF block is 8 MB, a file whose extension lies, a GIF,
a 0-byte object, random bytes. Memory is measured in a child process (peak RSS) under ``RLIMIT_AS``.
"""

from __future__ import annotations

import io
import json
import resource
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from PIL import Image
from redis import Redis

from converters import codes
from converters.imagemeta import ImageMeta, image_meta_from_header
from converters.jsonio import RawLine
from converters.validation import check_line
from sync_service.domain.publisher import HEADER_BYTES, ImageMetaCache
from sync_service.edges.s3 import Storage
from sync_service.edges.state import IMAGE_META_KEY
from tests.realparts import S3

pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # expected here
RSS_GROWTH_LIMIT = 64 * 1024 * 1024  # what reading one header may add to the peak RSS
ADDRESS_SPACE = 1024 * 1024 * 1024


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_bomb(side: int, *, rows: int | None = None) -> bytes:
    """An RGBA PNG of ``side`` x ``side`` black pixels, deflated (``rows`` of them actually present)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    row = b"\x00" * (1 + side * 4)
    deflate = zlib.compressobj(9)
    data = b"".join(deflate.compress(row) for _ in range(side if rows is None else rows)) + deflate.flush()
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def png_with_exif(exif_bytes: int) -> bytes:
    """A 64 x 64 PNG with an eXIf chunk of ``exif_bytes`` before its pixels."""
    small = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(small, "PNG")
    raw = small.getvalue()
    ihdr_end = 8 + 25
    exif = b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00" * (exif_bytes - 8)
    return raw[:ihdr_end] + _chunk(b"eXIf", exif) + raw[ihdr_end:]


def encoded(fmt: str, size: tuple[int, int] = (640, 480)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(out, fmt)
    return out.getvalue()


JPEG = encoded("JPEG")
HOSTILE: dict[str, bytes] = {
    "a PNG bomb of 12,000 x 12,000": png_bomb(12_000),
    "a PNG header claiming 100,000 x 100,000": png_bomb(100_000, rows=2),
    "a JPEG cut after 100 bytes": JPEG[:100],
    "a JPEG cut in half": JPEG[: len(JPEG) // 2],
    "a PNG with an 8 MB EXIF block": png_with_exif(8 * 1024 * 1024),
    "a PNG named .jpg": encoded("PNG"),
    "a GIF": encoded("GIF"),
    "a 0-byte file": b"",
    "random bytes": bytes((i * 7919) % 251 for i in range(200_000)),
}

_PROBE = """
import resource, sys
from converters.imagemeta import image_meta_from_header
from sync_service.domain.publisher import HEADER_BYTES
data = sys.stdin.buffer.read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
results = [image_meta_from_header(data[:size]) for size in HEADER_BYTES]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024, [None if r is None else (r.width, r.height, r.format) for r in results])
"""


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_reading_a_header_is_bounded_in_memory(name: str) -> None:
    """What the publisher does with each object (ranged reads of 64 kB, then 1 MB), in a child process:
    found by this test, PIL decoded every pixel of a PNG to look for EXIF after them (583 MB peak RSS and
    2 s for the 560 KB bomb's header)."""
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        input=HOSTILE[name],
        capture_output=True,
        timeout=60,
        preexec_fn=_limited,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    growth, results = done.stdout.decode().split(" ", 1)
    assert int(growth) < RSS_GROWTH_LIMIT, (name, int(growth) // 2**20, "MiB")
    assert "Traceback" not in done.stderr.decode()
    del results


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_image_meta_from_header_gives_facts_or_none(name: str) -> None:
    for size in HEADER_BYTES:
        meta = image_meta_from_header(HOSTILE[name][:size])
        assert meta is None or (meta.width > 0 and meta.height > 0 and 1 <= meta.orientation <= 8)


def test_what_the_validator_makes_of_them() -> None:
    """Facts that are there but wrong give ERROR_INVALID_IMAGE (format) or a dimension error."""
    ref = "s3://bucket/x.jpg"
    line = RawLine(
        1,
        json.dumps(
            {
                "source-ref": ref,
                "label": 0,
                "label-metadata": {
                    "class-name": "a",
                    "confidence": 1,
                    "type": "groundtruth/image-classification",
                    "human-annotated": "yes",
                    "creation-date": "2020-01-01T00:00:00",
                },
            }
        ).encode(),
    )

    def codes_of(meta: ImageMeta) -> list[str]:
        out = json.loads(check_line(line, image_meta={ref: meta}).output)
        found = [e["code"] for e in out.get("errors", [])]
        for value in out.values():
            if isinstance(value, dict):
                found += [e["code"] for e in value.get("errors", [])]
        return found

    gif = image_meta_from_header(HOSTILE["a GIF"])
    assert gif is not None and gif.format == "gif"
    assert codes.ERROR_INVALID_IMAGE in codes_of(gif)
    bomb = image_meta_from_header(HOSTILE["a PNG bomb of 12,000 x 12,000"][: HEADER_BYTES[0]])
    assert bomb is not None and (bomb.width, bomb.height) == (12_000, 12_000)
    assert {codes.ERROR_INVALID_IMAGE, codes.ERROR_INVALID_IMAGE_DIMENSION} & set(codes_of(bomb))
    liar = image_meta_from_header(HOSTILE["a PNG named .jpg"])
    assert liar is not None and liar.format == "png" and codes_of(liar) == []  # PNG is allowed


@pytest.fixture
def cache(s3: S3, bucket: str, redis_url: str) -> Iterator[tuple[ImageMetaCache, Any]]:
    redis = Redis.from_url(redis_url)
    yield ImageMetaCache(redis, Storage(s3.client, bucket)), redis
    for name in HOSTILE:
        redis.hdel(IMAGE_META_KEY, f"s3://{bucket}/hostile/{name}.jpg")
    redis.close()


def test_the_publishers_image_cache_over_real_s3(
    cache: tuple[ImageMetaCache, Any], s3: S3, bucket: str
) -> None:
    images, redis = cache
    for name, body in HOSTILE.items():
        s3.client.put_object(Bucket=bucket, Key=f"hostile/{name}.jpg", Body=body)
    found = {name: images.get(f"s3://{bucket}/hostile/{name}.jpg") for name in HOSTILE}
    assert found["a 0-byte file"] is None
    assert found["random bytes"] is None
    assert found["a JPEG cut after 100 bytes"] is None
    assert found["a PNG header claiming 100,000 x 100,000"] is None  # PIL refuses it as a bomb
    assert found["a PNG named .jpg"] == ImageMeta(640, 480, 1, "png")
    assert images.get(f"s3://{bucket}/hostile/missing.jpg") is None
    # Only facts are kept in Redis, never a None: a fixed object is read again next time.
    assert redis.hget(IMAGE_META_KEY, f"s3://{bucket}/hostile/a 0-byte file.jpg") is None


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_a_png_keeps_its_exif_orientation(orientation: int) -> None:
    """The memory fix reads EXIF from the header only: an eXIf chunk before the pixels still counts."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    Image.new("RGB", (300, 200)).save(out, "PNG", exif=exif.tobytes())
    assert image_meta_from_header(out.getvalue()[: HEADER_BYTES[0]]) == ImageMeta(
        300, 200, orientation, "png"
    )
