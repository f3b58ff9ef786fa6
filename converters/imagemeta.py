"""Stored pixel size and EXIF orientation of images: the ``--image-meta`` JSON Lines format.

One object a line: ``{"source-ref": "s3://...", "width": W, "height": H, "orientation": 1..8}`` with the
stored size in pixels (EXIF not applied). Optional ``"format"`` (``"jpeg"``/``"png"``/...) and ``"bytes"``
(object size) let the validator apply Rekognition's image rules without fetching the image.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from converters.errors import ImageMetaError
from converters.geometry import ORIENTATIONS, displayed_size
from converters.jsonio import iter_json_records

_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True, slots=True)
class ImageMeta:
    """Facts of one stored image: pixel ``width`` x ``height``, EXIF ``orientation``, format and bytes."""

    width: int
    height: int
    orientation: int = 1
    format: str | None = None
    bytes: int | None = None

    @property
    def displayed(self) -> tuple[int, int]:
        """The size the browser shows (EXIF orientation applied), in pixels."""
        return displayed_size(self.width, self.height, self.orientation)

    def as_json(self, source_ref: str) -> dict[str, Any]:
        """The ``--image-meta`` line for this image."""
        out: dict[str, Any] = {
            "source-ref": source_ref,
            "width": self.width,
            "height": self.height,
            "orientation": self.orientation,
        }
        if self.format is not None:
            out["format"] = self.format
        if self.bytes is not None:
            out["bytes"] = self.bytes
        return out


def _positive_int(obj: dict[str, Any], key: str) -> bool:
    value = obj.get(key)
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def parse_image_meta(
    obj: Any, *, source: str = "<image meta>", line: int | None = None
) -> tuple[str, ImageMeta]:
    """Read one ``--image-meta`` object; raise :class:`ImageMetaError` naming the bad field."""
    if not isinstance(obj, dict):
        raise ImageMetaError("expected a JSON object", source=source, line=line)
    ref = obj.get("source-ref")
    if not isinstance(ref, str) or not ref:
        raise ImageMetaError("missing or empty", source=source, line=line, field="source-ref")
    for key in ("width", "height"):
        if not _positive_int(obj, key):
            raise ImageMetaError(
                f"must be a positive integer, got {obj.get(key)!r}", source=source, line=line, field=key
            )
    orientation = obj.get("orientation", 1)
    if orientation not in ORIENTATIONS or isinstance(orientation, bool):
        raise ImageMetaError(
            f"must be an EXIF orientation 1..8, got {orientation!r}",
            source=source,
            line=line,
            field="orientation",
        )
    fmt = obj.get("format")
    if fmt is not None and not isinstance(fmt, str):
        raise ImageMetaError("must be a string", source=source, line=line, field="format")
    size = obj.get("bytes")
    if size is not None and not (isinstance(size, int) and not isinstance(size, bool) and size >= 0):
        raise ImageMetaError("must be a non-negative integer", source=source, line=line, field="bytes")
    return ref, ImageMeta(obj["width"], obj["height"], orientation, fmt.lower() if fmt else None, size)


def iter_image_meta(stream: IO[bytes], *, source: str = "<image meta>") -> Iterator[tuple[str, ImageMeta]]:
    """Yield ``(source_ref, ImageMeta)`` for each line of an ``--image-meta`` stream."""
    for record in iter_json_records(stream, source=source):
        yield parse_image_meta(record.value, source=source, line=record.position)


def read_image_meta(stream: IO[bytes], *, source: str = "<image meta>") -> dict[str, ImageMeta]:
    """All of an ``--image-meta`` stream as a dict keyed by ``source-ref``."""
    return dict(iter_image_meta(stream, source=source))


def image_meta_from_header(head: bytes, *, total_bytes: int | None = None) -> ImageMeta | None:
    """Stored size and EXIF orientation from the first bytes of an image file (no full decode).

    ``head`` is the start of the file (a ranged read of some tens of kB holds a JPEG's EXIF and frame
    header, or a PNG's IHDR and eXIf chunks); returns None when these bytes do not say, so the caller
    may read more. ``total_bytes`` is the object's size, kept for the validator's image rules.
    """
    # Imported here: the converter commands that never read an image start faster without Pillow.
    from PIL import Image  # noqa: PLC0415

    try:
        with Image.open(io.BytesIO(head)) as image:
            width, height = image.size
            fmt = (image.format or "").lower() or None
            try:
                # Image.getexif, not the PNG plugin's override: that one decodes every pixel to look for
                # an eXIf chunk after them (a decompression bomb's worth of memory for a header read).
                orientation = int(Image.Image.getexif(image).get(_EXIF_ORIENTATION, 1))
            except (OSError, SyntaxError, ValueError, struct.error):
                orientation = 1  # an unreadable EXIF block: the browser shows the image unrotated too
    except (OSError, SyntaxError, ValueError, struct.error, Image.DecompressionBombError):
        return None
    if orientation not in ORIENTATIONS:
        orientation = 1
    if width <= 0 or height <= 0:
        return None
    return ImageMeta(width, height, orientation, "jpeg" if fmt == "mpo" else fmt, total_bytes)
