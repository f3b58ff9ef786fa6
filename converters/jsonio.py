"""Streaming readers and writers for JSON Lines and JSON arrays, on streams handed in by the caller.

Memory stays flat in the number of records: JSON arrays are read item by item (ijson), JSON Lines line by
line with a bound on the line length, so a 1 GB line costs a bounded buffer, not 1 GB.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import ijson
import orjson

from converters.errors import InputFormatError

_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class RawLine:
    """One line of a JSON Lines stream: its 1-based number and its bytes without the line break.

    ``too_long`` is set (and ``data`` is empty) when the line exceeded the reader's character limit; the
    rest of that line was skipped.
    """

    number: int
    data: bytes
    too_long: bool = False
    length: int = 0


def iter_lines(stream: IO[bytes], *, max_chars: int | None = None) -> Iterator[RawLine]:
    """Yield every line of ``stream`` (``\\n`` or ``\\r\\n``), numbered from 1.

    A line longer than ``max_chars`` characters is reported with ``too_long`` instead of being held in
    memory. A final line without a line break counts; the empty string after a final break does not.
    """
    # UTF-8 needs at most 4 bytes a character: read that many bytes, then count characters.
    byte_limit = None if max_chars is None else max_chars * 4 + 2
    number = 0
    while True:
        raw = stream.readline() if byte_limit is None else stream.readline(byte_limit)
        if not raw:
            return
        number += 1
        if byte_limit is not None and len(raw) >= byte_limit and not raw.endswith(b"\n"):
            length = len(raw)
            while True:
                rest = stream.readline(_CHUNK)
                length += len(rest)
                if not rest or rest.endswith(b"\n"):
                    break
            yield RawLine(number, b"", too_long=True, length=length)
            continue
        data = raw.rstrip(b"\r\n") if raw.endswith(b"\n") else raw
        if max_chars is not None and len(data) > max_chars:
            chars = len(data.decode("utf-8", errors="replace"))
            if chars > max_chars:
                yield RawLine(number, b"", too_long=True, length=chars)
                continue
        yield RawLine(number, data)


def loads(data: bytes | str) -> Any:
    """Parse one JSON document (orjson: strict UTF-8, no NaN)."""
    return orjson.loads(data)


def dumps(obj: Any) -> bytes:
    """Serialize ``obj`` to compact JSON bytes, key order kept."""
    return orjson.dumps(obj)


@dataclass(frozen=True, slots=True)
class Record:
    """One JSON object read from a stream and where it was: ``unit`` is ``"line"`` or ``"item"``."""

    position: int
    unit: str
    value: Any


def _first_byte(stream: IO[bytes]) -> bytes:
    peek = getattr(stream, "peek", None)
    if peek is None:
        raise InputFormatError("the input stream must support peek() (open it in binary, buffered mode)")
    while True:
        head: bytes = peek(64)
        if not head:
            return b""
        stripped = head.lstrip(b" \t\r\n\xef\xbb\xbf")
        if stripped:
            return stripped[:1]
        # Only white space so far: consume it and look further.
        stream.read(len(head))


def iter_json_records(
    stream: IO[bytes], *, source: str = "<input>", max_line_chars: int | None = None
) -> Iterator[Record]:
    """Yield the objects of a JSON array (``[{...}, ...]``) or of JSON Lines, detected from the first byte.

    Raises :class:`InputFormatError` naming ``source`` and the line or item for broken JSON, including the
    telltale of a pretty-printed JSON Lines file (an object spread over several lines).
    """
    first = _first_byte(stream)
    if first == b"[":
        yield from _iter_array(stream, source)
    elif first in (b"{", b""):
        yield from _iter_jsonl(stream, source, max_line_chars)
    else:
        raise InputFormatError(
            f"expected a JSON array or JSON Lines of objects, found {first.decode('latin-1')!r}",
            source=source,
            line=1,
        )


def _iter_array(stream: IO[bytes], source: str) -> Iterator[Record]:
    index = 0
    try:
        for index, item in enumerate(ijson.items(stream, "item", use_float=True), start=1):
            yield Record(index, "item", item)
    except ijson.JSONError as exc:
        raise InputFormatError(
            f"broken JSON after item {index} of the array: {exc}", source=source, line=index + 1, unit="item"
        ) from exc


def _iter_jsonl(stream: IO[bytes], source: str, max_line_chars: int | None) -> Iterator[Record]:
    for raw in iter_lines(stream, max_chars=max_line_chars):
        if raw.too_long:
            raise InputFormatError(
                f"the line has {raw.length:,} characters, over the limit of {max_line_chars:,}",
                source=source,
                line=raw.number,
            )
        if not raw.data.strip():
            continue
        try:
            value = orjson.loads(raw.data)
        except orjson.JSONDecodeError as exc:
            hint = ""
            if raw.data.strip() in (b"{", b"["):
                hint = " (this looks like pretty-printed JSON: JSON Lines need one whole object per line)"
            raise InputFormatError(f"broken JSON: {exc}{hint}", source=source, line=raw.number) from exc
        if not isinstance(value, dict):
            raise InputFormatError(
                f"expected a JSON object, found {type(value).__name__}", source=source, line=raw.number
            )
        yield Record(raw.number, "line", value)


def write_json_lines(out: IO[bytes], objects: Iterable[Any]) -> int:
    """Write ``objects`` as JSON Lines; return how many were written."""
    count = 0
    for obj in objects:
        out.write(orjson.dumps(obj))
        out.write(b"\n")
        count += 1
    return count


def iter_range_lines(
    stream: IO[bytes], start: int, end: int, *, max_chars: int | None = None
) -> Iterator[RawLine]:
    """The lines of ``stream`` that start in ``[start, end)`` (``start`` at a line start), numbered from 1."""
    stream.seek(start)
    if start >= end:
        return
    for raw in iter_lines(stream, max_chars=max_chars):
        yield raw
        if stream.tell() >= end:
            return
