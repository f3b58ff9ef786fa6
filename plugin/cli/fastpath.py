"""The byte-level fast path of the line-parallel commands (ls-to-manifest, manifest-to-ls, validate).

A file is cut into byte ranges at line breaks; worker processes read their own ranges and parse them, so
this process neither reads nor re-serializes lines and stays free to write the results in order. It
covers two jobs: the tasks of a Label Studio export laid out one a line (the layout found by
:func:`find_task_layout`, converted by :func:`manifest_chunks_of_ranges`), and the lines of a manifest
(:func:`range_lines`, run over a file or standard input by :func:`map_manifest_lines`). Each gives what
the general streaming readers give (``tests/plugin/cli/test_fastpath.py`` holds them to it).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, NamedTuple, Protocol, TypeVar

import ijson

from converters.errors import Issue
from converters.fastlines import task_line
from converters.jsonio import dumps, iter_lines, loads
from converters.labelstudio import ReadOptions, task_to_entry
from converters.manifest import entry_to_line
from plugin.cli.common import MAX_LINE
from plugin.pipelines import chunked, map_ranges

RANGE_BYTES = 2 << 20  # the bytes of a file one worker reads at a time

# ------------------------------------------------------------------- ls-to-manifest: tasks one a line

# The fast path of ls-to-manifest: worker processes read line ranges of the file themselves and parse
# them, so this process neither parses nor re-serializes tasks. It applies to a file of JSON Lines, or to
# a JSON array laid out one item a line ("[", "{...},", ..., "{...}", "]": Label Studio's and our
# exports), and gives the same result as the streaming reader: any line it cannot read exactly as that
# reader would (broken JSON, a task that fails, an odd layout) makes it stop and leave the file to it.
_JSON_SPACE = b" \t\r\n"
# 19 digits in a row may be an integer beyond 64 bits, which ijson refuses. Found with translate(): every
# digit to "0", all else to ".", then a plain search (a regular expression takes ten times as long).
_DIGITS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x2E for byte in range(256))
_LONG_NUMBER = b"0" * 19
_DEEP = 200  # '[' plus '{' from which a task may nest deeper than orjson writes

_READ_OPTIONS = ReadOptions()
_LAYOUT: tuple[str, int] = ("line", 0)  # a worker's (unit, stop) of the file it reads ranges of


def set_read_options(options: ReadOptions) -> None:
    """Set the options a worker process converts tasks with (the pool's initializer)."""
    global _READ_OPTIONS  # noqa: PLW0603 (one per worker process, set once by the pool)
    _READ_OPTIONS = options


def _set_layout(options: ReadOptions, unit: str, stop: int) -> None:
    global _LAYOUT  # noqa: PLW0603 (one per worker process, set once by the pool)
    set_read_options(options)
    _LAYOUT = (unit, stop)


class TaskLayout(NamedTuple):
    """The bytes ``[start, stop)`` of a file holding its tasks one a line; ``unit`` is ``"item"`` for a
    JSON array, ``"line"`` for JSON Lines (what a report counts in)."""

    unit: str
    start: int
    stop: int


def find_task_layout(path: str) -> TaskLayout | None:
    """Where the tasks of ``path`` lie one a line, or None when only the streaming reader will do."""
    if path == "-" or not os.path.isfile(path):
        return None
    size = os.path.getsize(path)
    with open(path, "rb") as stream:
        head = stream.read(1 << 16)
        first = head.lstrip(b" \t\r\n\xef\xbb\xbf")[:1]  # as iter_json_records decides
        if first == b"{":
            return TaskLayout("line", 0, size)
        newline = head.find(b"\n")
        if first != b"[" or newline < 0 or head[:newline].strip(_JSON_SPACE) != b"[":
            return None
        start = newline + 1
        tail_start = max(start, size - (1 << 16))
        stream.seek(tail_start)
        tail = stream.read().rstrip(_JSON_SPACE)
    if not tail.endswith(b"]"):
        return None
    before = tail[:-1].rstrip(b" \t\r")
    items = before.rstrip(_JSON_SPACE)
    if not before.endswith(b"\n") or not items:
        return None  # "]" shares its line with an item, or the tail is all space
    stop = tail_start + len(items)
    return TaskLayout("item", start, stop) if stop > start else None


@dataclass(slots=True)
class ManifestChunk:
    """The manifest lines of one range (joined by newlines), with what the parent process needs of each:
    its position, the 64-bit hash of its source-ref, its warnings; ``failed`` when the range cannot be
    read here and the streaming reader must take over."""

    blob: bytes = b""
    hashes: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    issues: list[tuple[int, Issue]] = field(default_factory=list)
    lines: int = 0  # items (array) or lines (JSON Lines) the range holds
    failed: bool = False
    error: tuple[int, str, str | None, str | None] | None = None  # the first task that cannot convert


def _general_line(task: Any, issues: list[Issue]) -> tuple[dict[str, Any], str]:
    """A task's manifest line and image the general way (when the shortcut of fastlines steps aside)."""
    entry = task_to_entry(task, _READ_OPTIONS, issues)
    return entry_to_line(entry), entry.source_ref


def manifest_line(task: Any, issues: list[Issue]) -> tuple[bytes, str]:
    """A parsed task's manifest line (JSON bytes) and image, by the shortcut of fastlines when it
    applies, else the general reader (which adds its warnings to ``issues``); raises as that reader does."""
    line, ref = task_line(task, _READ_OPTIONS) or _general_line(task, issues)
    return dumps(line), ref


def over_line_limit(data: bytes) -> bool:
    """Whether a manifest line (JSON bytes) has more characters than Rekognition takes."""
    return len(data) > MAX_LINE and len(data.decode("utf-8")) > MAX_LINE


def _exact_task(text: bytes, array: bool) -> Any:
    """A task as the streaming reader hands it over: parsed (ijson for array items), re-serialized and
    parsed again; raises where that reader would fail."""
    values = list(ijson.items(io.BytesIO(text), "", use_float=True)) if array else [loads(text)]
    if len(values) != 1:
        raise ValueError("not one JSON value")
    return loads(dumps(values[0]))


def _manifest_of_range(path: str, start: int, end: int) -> ManifestChunk:
    """Tasks one a line in ``[start, end)`` of ``path`` -> manifest lines; runs in a worker."""
    with open(path, "rb") as stream:
        stream.seek(start)
        block = stream.read(end - start)
    unit, stop = _LAYOUT
    array = unit == "item"
    pieces = block.split(b"\n")
    if not pieces[-1]:
        pieces.pop()
    last = len(pieces) - 1 if end >= stop else -1  # the index of the array's final item, if here
    risky = _LONG_NUMBER in block.translate(_DIGITS)
    out = ManifestChunk()
    lines: list[bytes] = []
    number = 0
    for index, piece in enumerate(pieces):
        if array:
            text = piece.strip(_JSON_SPACE)
            if not text:
                continue
            number += 1
            if text[-1:] == b",":
                text = text[:-1]
            elif index != last:
                out.failed = True
                return out
        else:
            number = index + 1
            if not piece.strip():
                continue
            text = piece
        issues: list[Issue] = []
        try:
            if (risky and _LONG_NUMBER in text.translate(_DIGITS)) or text.count(b"[") + text.count(
                b"{"
            ) > _DEEP:
                task = _exact_task(text, array)
            else:
                task = loads(text)
            if type(task) is not dict:
                raise TypeError("not a JSON object")  # noqa: TRY301 (the streaming reader reports it)
            data, ref = manifest_line(task, issues)
            if over_line_limit(data):
                raise ValueError("line too long")  # noqa: TRY301
        except Exception:  # noqa: BLE001 (whatever it is, the streaming reader says it as before)
            out.failed = True
            return out
        for issue in issues:
            out.issues.append((number, issue))
        lines.append(data)
        out.hashes.append(hash(ref))
        out.positions.append(number)
    out.blob = b"\n".join(lines)
    out.lines = number if array else len(pieces)
    return out


def manifest_chunks_of_ranges(
    path: str, layout: TaskLayout, options: ReadOptions
) -> Iterator[tuple[int, ManifestChunk]]:
    """The manifest lines of the tasks in ``layout`` of ``path``, converted by worker processes reading
    line ranges, in order: ``(offset, chunk)``, the offset to add to the chunk's positions."""
    work = map_ranges(
        _manifest_of_range,
        path,
        initializer=_set_layout,
        initargs=(options, layout.unit, layout.stop),
        target=RANGE_BYTES,
        start=layout.start,
        stop=layout.stop,
    )
    offset = 0
    for chunk in work:
        yield offset, chunk
        offset += chunk.lines


# ------------------------------------------------------------------- manifest lines (manifest-to-ls, validate)

# A RawLine's fields (number, data, too_long, length): the workers' lines, without a dataclass each.
Line = tuple[int, bytes, bool, int]


def range_lines(path: str, start: int, end: int, max_chars: int) -> list[Line]:
    """The lines of ``[start, end)`` of ``path`` (``start`` at a line start, ``end`` at one or at the end
    of the file) as :func:`~converters.jsonio.iter_range_lines` gives them, read in one go."""
    with open(path, "rb") as stream:
        stream.seek(start)
        block = stream.read(end - start)
    pieces = block.split(b"\n")
    last = pieces.pop()  # what follows the final line break: nothing, or a last line without one
    byte_limit = max_chars * 4 + 2  # what iter_lines reads of a line at most
    lines: list[Line] = []
    for number, piece in enumerate(pieces, 1):
        if len(piece) >= byte_limit:  # its line break is past what iter_lines reads: too long, in bytes
            lines.append((number, b"", True, len(piece) + 1))
            continue
        data = piece.rstrip(b"\r")  # as iter_lines strips "\r\n" off a line that has its break
        if len(data) > max_chars and len(chars := data.decode("utf-8", errors="replace")) > max_chars:
            lines.append((number, b"", True, len(chars)))
        else:
            lines.append((number, data, False, 0))
    if last:
        number = len(pieces) + 1
        if len(last) >= byte_limit:
            lines.append((number, b"", True, len(last)))
        elif len(last) > max_chars and len(chars := last.decode("utf-8", errors="replace")) > max_chars:
            lines.append((number, b"", True, len(chars)))
        else:
            lines.append((number, last, False, 0))
    return lines


class HasLines(Protocol):
    """A worker's result over some lines: how many lines it covered."""

    lines: int


W = TypeVar("W", bound=HasLines)


def map_manifest_lines(
    path: str,
    stream: IO[bytes],
    per_lines: Callable[[Iterable[Line]], W],
    per_range: Callable[[str, int, int], W],
    initializer: Callable[..., None],
    initargs: tuple[object, ...],
) -> Iterator[tuple[int, W]]:
    """Run a per-line worker over a manifest in order; yield ``(line offset, result)`` per piece.

    A file is cut into byte ranges that worker processes read themselves; standard input is read here
    in chunks. Line numbers in a result count from its piece's start: add the offset.
    """
    if path == "-":
        initializer(*initargs)
        offset = 0
        for chunk in chunked(iter_lines(stream, max_chars=MAX_LINE)):
            result = per_lines((raw.number - offset, raw.data, raw.too_long, raw.length) for raw in chunk)
            yield offset, result
            offset += result.lines
        return
    offset = 0
    for result in map_ranges(per_range, path, initializer=initializer, initargs=initargs, target=RANGE_BYTES):
        yield offset, result
        offset += result.lines
