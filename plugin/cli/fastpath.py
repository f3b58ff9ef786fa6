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
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from itertools import chain
from typing import IO, Any, NamedTuple, Protocol, TypeVar

import ijson

from converters.errors import Issue
from converters.fastlines import task_line
from converters.jsonio import dumps, iter_lines, loads
from converters.labelstudio import ReadOptions, task_to_entry
from converters.manifest import entry_to_line
from plugin.cli.common import MAX_LINE
from plugin.pipelines import chunked, map_ranges, ordered_map

RANGE_BYTES = 2 << 20  # the bytes of a file one worker reads at a time

# ------------------------------------------------------------------- ls-to-manifest: tasks one a line

# The fast path of ls-to-manifest: worker processes read byte ranges of the file themselves and parse
# them, so this process neither parses nor re-serializes tasks. It applies to a file of JSON Lines, to a
# JSON array laid out one item a line ("[", "{...},", ..., "{...}", "]": our exports), and to a JSON array
# on one line whose tasks begin with their id and annotations (Label Studio's export, see _TASK_CUT). It
# gives the same result as the streaming reader: any task it cannot read exactly as that reader would
# (broken JSON, a task that fails, an odd layout) makes it stop and leave the file to it.
_JSON_SPACE = b" \t\r\n"
# 19 digits in a row may be an integer beyond 64 bits, which ijson refuses. Found with translate(): every
# digit to "0", all else to ".", then a plain search (a regular expression takes ten times as long).
_DIGITS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x2E for byte in range(256))
_LONG_NUMBER = b"0" * 19
_DEEP = 200  # '[' plus '{' from which a task may nest deeper than orjson writes

# Label Studio (1.23.2) writes an export as one line, "[{...},{...}]", every task's object starting
# '{"id":<int>,"annotations":' (its serializer's order; Python's default separators add a space). Every
# match of this pattern is a place where a task may end: a '"' cannot stand unescaped inside a JSON
# string, so in a valid file each match lies outside strings. It may still lie inside a task (objects of
# that shape nested in its data): a reader starting at a true task start joins pieces until they parse
# as one JSON value, which is exactly that task (a JSON value's end is fixed by its first byte, so no
# shorter piece parses, and orjson refuses anything after it). A range starting inside a task leaves the
# range before it with an unfinished task, which fails that range, so the whole file goes to the
# streaming reader: ranges are taken only when each ends where a task does.
_TASK_CUT = re.compile(rb'\}, ?(?=\{"id": ?\d+, ?"annotations":)')
_ARRAY_HEAD = re.compile(rb'\[[ \t\r\n]*\{"id": ?\d+, ?"annotations":')
_MAX_TASK_RANGE = 64 << 20  # a range of the one-line layout that finds no cut within this: not taken

_READ_OPTIONS = ReadOptions()
# A worker's (unit, stop, cut) of the file it reads ranges of: cut "line" for tasks one a line, "task"
# for Label Studio's one-line array.
_LAYOUT: tuple[str, int, str] = ("line", 0, "line")


def set_read_options(options: ReadOptions) -> None:
    """Set the options a worker process converts tasks with (the pool's initializer)."""
    global _READ_OPTIONS  # noqa: PLW0603 (one per worker process, set once by the pool)
    _READ_OPTIONS = options


def _set_layout(options: ReadOptions, unit: str, stop: int, cut: str = "line") -> None:
    global _LAYOUT  # noqa: PLW0603 (one per worker process, set once by the pool)
    set_read_options(options)
    _LAYOUT = (unit, stop, cut)


class TaskLayout(NamedTuple):
    """The bytes ``[start, stop)`` of a file holding its tasks; ``unit`` is ``"item"`` for a JSON array,
    ``"line"`` for JSON Lines (what a report counts in); ``cut`` is ``"line"`` for tasks one a line,
    ``"task"`` for an array on one line in Label Studio's layout (cut where :data:`_TASK_CUT` matches)."""

    unit: str
    start: int
    stop: int
    cut: str = "line"


def find_task_layout(path: str) -> TaskLayout | None:
    """Where the tasks of ``path`` lie one a line or in Label Studio's one-line array, or None when only
    the streaming reader will do."""
    if path == "-" or not os.path.isfile(path):
        return None
    size = os.path.getsize(path)
    with open(path, "rb") as stream:
        head = stream.read(1 << 16)
        first = head.lstrip(b" \t\r\n\xef\xbb\xbf")[:1]  # as iter_json_records decides
        if first == b"{":
            return TaskLayout("line", 0, size)
        newline = head.find(b"\n")
        one_line = _ARRAY_HEAD.match(head, len(head) - len(head.lstrip(b" \t\r\n\xef\xbb\xbf")))
        cut = "line"
        if one_line is not None and (newline < 0 or head[:newline].strip(_JSON_SPACE) != b"["):
            start = one_line.start() + one_line.group().index(b"{")
            cut = "task"
        elif first != b"[" or newline < 0 or head[:newline].strip(_JSON_SPACE) != b"[":
            return None
        else:
            start = newline + 1
        tail_start = max(start, size - (1 << 16))
        stream.seek(tail_start)
        tail = stream.read().rstrip(_JSON_SPACE)
    if not tail.endswith(b"]"):
        return None
    before = tail[:-1].rstrip(b" \t\r")
    items = before.rstrip(_JSON_SPACE)
    if cut == "task":
        stop = tail_start + len(items)
        return TaskLayout("item", start, stop, "task") if stop > start else None
    if not before.endswith(b"\n") or not items:
        return None  # "]" shares its line with an item, or the tail is all space
    stop = tail_start + len(items)
    return TaskLayout("item", start, stop) if stop > start else None


def task_ranges(path: str, start: int, stop: int, target: int) -> list[tuple[int, int]] | None:
    """Byte ranges of about ``target`` bytes covering ``[start, stop)`` of a one-line array, each
    starting where :data:`_TASK_CUT` matches (after its separator); None when a range would pass
    :data:`_MAX_TASK_RANGE` without one."""
    ranges: list[tuple[int, int]] = []
    with open(path, "rb") as stream:
        while start < stop:
            probe = start + target
            cut = None
            if probe < stop:
                stream.seek(probe)
                carry = b""
                while cut is None and probe < stop and probe - start <= _MAX_TASK_RANGE:
                    block = stream.read(1 << 16)
                    if not block:
                        break
                    found = _TASK_CUT.search(carry + block)
                    if found is not None:
                        cut = probe - len(carry) + found.end()
                    carry = block[-128:]  # a cut whose look-ahead runs past this block: found next time
                    probe += len(block)
            if cut is None or cut >= stop:
                if stop - start > _MAX_TASK_RANGE:
                    return None
                cut = stop
            ranges.append((start, cut))
            start = cut
    return ranges


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


def _parse_task(text: bytes, array: bool, risky: bool) -> Any:
    """One task's JSON as the streaming reader would hand it over; raises where it is not one value."""
    if (risky and _LONG_NUMBER in text.translate(_DIGITS)) or text.count(b"[") + text.count(b"{") > _DEEP:
        return _exact_task(text, array)
    return loads(text)


def _convert_task(task: Any, number: int, out: ManifestChunk, lines: list[bytes]) -> bool:
    """Add a parsed task's manifest line to ``out``; False when the streaming reader must take over."""
    issues: list[Issue] = []
    try:
        if type(task) is not dict:
            raise TypeError("not a JSON object")  # noqa: TRY301 (the streaming reader reports it)
        data, ref = manifest_line(task, issues)
        if over_line_limit(data):
            raise ValueError("line too long")  # noqa: TRY301
    except Exception:  # noqa: BLE001 (whatever it is, the streaming reader says it as before)
        return False
    for issue in issues:
        out.issues.append((number, issue))
    lines.append(data)
    out.hashes.append(hash(ref))
    out.positions.append(number)
    return True


def _manifest_of_range(path: str, start: int, end: int) -> ManifestChunk:
    """Tasks in ``[start, end)`` of ``path`` -> manifest lines; runs in a worker."""
    with open(path, "rb") as stream:
        stream.seek(start)
        block = stream.read(end - start)
    unit, stop, cut = _LAYOUT
    if cut == "task":
        return _manifest_of_one_line(block, end >= stop)
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
        try:
            task = _parse_task(text, array, risky)
        except Exception:  # noqa: BLE001 (the streaming reader says what is wrong)
            out.failed = True
            return out
        if not _convert_task(task, number, out, lines):
            out.failed = True
            return out
    out.blob = b"\n".join(lines)
    out.lines = number if array else len(pieces)
    return out


def _manifest_of_one_line(block: bytes, final: bool) -> ManifestChunk:
    """The tasks of a range of Label Studio's one-line array (``final``: the array's last range) ->
    manifest lines. Pieces between cuts are joined until they parse (see :data:`_TASK_CUT`); a range
    that does not end where a task does fails."""
    out = ManifestChunk()
    body = block.rstrip(b" ")
    if not final:
        if body[-1:] != b",":
            out.failed = True
            return out
        body = body[:-1]
    risky = _LONG_NUMBER in body.translate(_DIGITS)
    lines: list[bytes] = []
    number = begin = 0
    for found in chain(_TASK_CUT.finditer(body), (None,)):
        text = body[begin : found.start() + 1 if found is not None else len(body)]
        try:
            task = _parse_task(text, True, risky)
        except Exception:  # noqa: BLE001 (not one value: cut inside a task, or broken JSON)
            if found is None:
                out.failed = True
                return out
            continue  # read on to the next cut
        number += 1
        if not _convert_task(task, number, out, lines):
            out.failed = True
            return out
        if found is not None:
            begin = found.end()
    out.blob = b"\n".join(lines)
    out.lines = number
    return out


def _manifest_of_span(path: str, span: tuple[int, int]) -> ManifestChunk:
    return _manifest_of_range(path, span[0], span[1])


def manifest_chunks_of_ranges(
    path: str, layout: TaskLayout, options: ReadOptions
) -> Iterator[tuple[int, ManifestChunk]]:
    """The manifest lines of the tasks in ``layout`` of ``path``, converted by worker processes reading
    byte ranges, in order: ``(offset, chunk)``, the offset to add to the chunk's positions."""
    initargs = (options, layout.unit, layout.stop, layout.cut)
    work: Iterable[ManifestChunk]
    if layout.cut == "task":
        ranges = task_ranges(path, layout.start, layout.stop, RANGE_BYTES)
        if ranges is None:
            yield 0, ManifestChunk(failed=True)
            return
        spans = ordered_map(
            partial(_manifest_of_span, path), ranges, initializer=_set_layout, initargs=initargs
        )
        work = (chunk for _, chunk in spans)
    else:
        work = map_ranges(
            _manifest_of_range,
            path,
            initializer=_set_layout,
            initargs=initargs,
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
