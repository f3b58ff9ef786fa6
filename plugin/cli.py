"""The ``customlabels`` command line: conversions, validation and the train/test split.

Exit codes: 0 success (for ``validate``: the dataset is usable for training), 1 bad data or a dataset
not usable for training, 2 usage errors. Outputs are replaced whole or not at all. With ``--json`` a
command prints one JSON document on standard output (``{"status": "error", "error": ...}`` when it
fails); warnings and errors still go to standard error.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import sys
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Protocol, TypeVar

import ijson

from converters import codes
from converters.coco import coco_to_entries
from converters.csvfile import format_rows, read_rows, row_to_entry, split_duplicates
from converters.errors import ConversionError, Issue, Report, Severity, TaskError
from converters.fastlines import line_check, line_task, task_line
from converters.imagemeta import ImageMeta, read_image_meta
from converters.jsonio import (
    RawLine,
    dumps,
    iter_json_records,
    iter_lines,
    loads,
    write_json_lines,
)
from converters.labelconfig import LabelConfig, build_label_config, parse_label_config
from converters.labelstudio import ReadOptions, WriteOptions, entry_to_task, task_to_entry
from converters.manifest import entry_to_line, parse_line
from converters.split import SplitItem, labels_short_of, split
from converters.validation import (
    KEPT,
    SKIPPED,
    ManifestValidator,
    check_line,
    file_error_summary,
    mark_duplicate,
    summarize,
)
from plugin import localstack
from plugin.fileio import CliError, atomic_output, open_input, write_text
from plugin.pipelines import chunked, map_ranges, ordered_map
from plugin.service_cli import add_parsers, run_service_command

MAX_LINE = codes.DEFAULT_LIMITS.max_line_chars
SERVICE_MODULES = ("plugin.service_cli", "plugin.dataset_cli", "plugin.localstack.commands")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _warn_all(report: Report) -> None:
    if report.items:
        _say(report.format())


def _print_json(document: object) -> None:
    """A command's result with ``--json``: one JSON document on standard output."""
    print(json.dumps(document, indent=2), flush=True)


def _issues_json(report: Report, limit: int = 20) -> list[dict[str, object]]:
    """The first ``limit`` issues of ``report``: where (``unit`` ``line`` or ``item``), code, severity."""
    return [
        {
            report.unit: number,
            "code": issue.code,
            "severity": issue.severity.value,
            "field": issue.field,
            "message": issue.message,
        }
        for number, issue in report.items[:limit]
    ]


def _load_meta(path: str | None) -> dict[str, ImageMeta]:
    if not path:
        return {}
    with open_input(path) as stream:
        return read_image_meta(stream, source=path)


def _load_config(path: str | None) -> LabelConfig | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise CliError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return parse_label_config(text, source=path)


# --------------------------------------------------------------------------------------------- convert


_READ_OPTIONS = ReadOptions()


def _set_read_options(options: ReadOptions) -> None:
    global _READ_OPTIONS  # noqa: PLW0603 (one per worker process, set once by the pool)
    _READ_OPTIONS = options


_SHOWN = 20  # issues a report prints (Report.format's default limit)


@dataclass(slots=True)
class _IssueLog(Report):
    """A :class:`Report` that keeps only the issues it prints and counts the rest: constant memory."""

    total: int = 0

    def add(self, line: int, issue: Issue) -> None:
        """Record ``issue`` against 1-based ``line``."""
        self.total += 1
        if len(self.items) < _SHOWN:
            self.items.append((line, issue))

    def format(self, limit: int = _SHOWN) -> str:
        """As :meth:`Report.format` over every issue added."""
        text = Report(self.source, self.items[:limit], self.unit).format(limit)
        return text + f"\n... and {self.total - limit} more" if self.total > limit else text


def _duplicate_issue(source_ref: str) -> Issue:
    message = f"{source_ref} is on an earlier task; this task is skipped"
    return Issue(codes.DUPLICATE_SOURCE_REF, message, Severity.WARNING, field="data.image")


def cmd_ls_to_manifest(args: argparse.Namespace) -> int:
    """Label Studio tasks (JSON array or JSON Lines) -> Ground Truth manifest."""
    options = ReadOptions(
        label_config=_load_config(args.label_config),
        image_meta=_load_meta(args.image_meta),
        job_name=args.job_name,
        s3_prefix=args.s3_prefix,
        now=_now(),
    )
    report = _IssueLog(source=args.input)
    with open_input(args.input) as stream, atomic_output(args.output) as out:
        rewrite = args.output != "-"  # a file: lines of repeated images can be taken out at the end
        layout = _task_layout(args.input) if rewrite else None
        count = _ls_to_manifest_ranges(args.input, layout, options, report, out) if layout else None
        if count is None:  # read as a stream, here, exactly as Label Studio's JSON is parsed
            if layout is not None:
                out.seek(0)
                out.truncate()
                report = _IssueLog(source=args.input)
            count = _ls_to_manifest_stream(args.input, stream, options, report, out, rewrite=rewrite)
    _warn_all(report)
    if args.json:
        _print_json(
            {
                "input": args.input,
                "output": args.output,
                "count": count,
                "warnings": report.total,
                "issues": _issues_json(report),
            }
        )
    else:
        _say(f"wrote {count} manifest lines to {args.output}")
    return 0


def _ls_to_manifest_stream(
    path: str, stream: IO[bytes], options: ReadOptions, report: _IssueLog, out: IO[bytes], *, rewrite: bool
) -> int:
    def tasks() -> Iterator[tuple[int, bytes]]:
        for record in iter_json_records(stream, source=path):
            report.unit = record.unit
            yield record.position, dumps(record.value)

    work = ordered_map(
        _manifest_of_tasks, chunked(tasks(), 1000), initializer=_set_read_options, initargs=(options,)
    )
    count = _write_manifest(((0, chunk) for _, chunk in work), path, report, out, rewrite=rewrite)
    assert count is not None
    return count


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
_RANGE_BYTES = 2 << 20
_LAYOUT: tuple[str, int] = ("line", 0)


def _task_layout(path: str) -> tuple[str, int, int] | None:
    """``(unit, start, stop)``: the bytes of ``path`` holding its tasks one a line (``unit`` ``"item"``
    for a JSON array, ``"line"`` for JSON Lines), or None when only the streaming reader will do."""
    if path == "-" or not os.path.isfile(path):
        return None
    size = os.path.getsize(path)
    with open(path, "rb") as stream:
        head = stream.read(1 << 16)
        first = head.lstrip(b" \t\r\n\xef\xbb\xbf")[:1]  # as iter_json_records decides
        if first == b"{":
            return "line", 0, size
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
    return ("item", start, stop) if stop > start else None


def _set_layout(options: ReadOptions, unit: str, stop: int) -> None:
    global _LAYOUT  # noqa: PLW0603 (one per worker process, set once by the pool)
    _set_read_options(options)
    _LAYOUT = (unit, stop)


@dataclass(slots=True)
class _ManifestChunk:
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


def _manifest_of_tasks(chunk: list[tuple[int, bytes]]) -> _ManifestChunk:
    """Label Studio tasks (position, JSON bytes) -> manifest lines; runs in a worker. The tasks after
    one that cannot be converted are still read (a failure of another kind among them is raised as
    before) but not kept."""
    out = _ManifestChunk()
    lines: list[bytes] = []
    for position, raw in chunk:
        issues: list[Issue] = []
        try:
            task = loads(raw)
            line, ref = task_line(task, _READ_OPTIONS) or _general_line(task, issues)
            data = dumps(line)
            if len(data) > MAX_LINE and len(data.decode("utf-8")) > MAX_LINE:
                message = (
                    f"the manifest line would have {len(data):,} characters, over Rekognition's {MAX_LINE:,}"
                )
                out.error = out.error or (position, message, None, None)
        except ConversionError as exc:
            out.error = out.error or (position, exc.message, exc.field, exc.code)
        if out.error is None:
            out.issues.extend((position, issue) for issue in issues)
            lines.append(data)
            out.hashes.append(hash(ref))
            out.positions.append(position)
    out.blob = b"\n".join(lines)
    return out


def _exact_task(text: bytes, array: bool) -> Any:
    """A task as the streaming reader hands it over: parsed (ijson for array items), re-serialized and
    parsed again; raises where that reader would fail."""
    values = list(ijson.items(io.BytesIO(text), "", use_float=True)) if array else [loads(text)]
    if len(values) != 1:
        raise ValueError("not one JSON value")
    return loads(dumps(values[0]))


def _manifest_of_range(path: str, start: int, end: int) -> _ManifestChunk:
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
    out = _ManifestChunk()
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
            line, ref = task_line(task, _READ_OPTIONS) or _general_line(task, issues)
            data = dumps(line)
            if len(data) > MAX_LINE and len(data.decode("utf-8")) > MAX_LINE:
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


def _ls_to_manifest_ranges(
    path: str, layout: tuple[str, int, int], options: ReadOptions, report: _IssueLog, out: IO[bytes]
) -> int | None:
    """Convert with workers reading line ranges; return the lines written, or None to start over.

    Every line is written as it comes; a task whose image an earlier task has is found at the end, from
    the 64-bit hashes of the images (8 bytes a task, where a set of them would take about 70), and its
    line taken out again: the output is then what writing only first images gives.
    """
    unit, start, stop = layout
    report.unit = unit
    work = map_ranges(
        _manifest_of_range,
        path,
        initializer=_set_layout,
        initargs=(options, unit, stop),
        target=_RANGE_BYTES,
        start=start,
        stop=stop,
    )

    def offsets() -> Iterator[tuple[int, _ManifestChunk]]:
        offset = 0
        for chunk in work:
            yield offset, chunk
            offset += chunk.lines

    return _write_manifest(offsets(), path, report, out, rewrite=True)


def _write_manifest(
    chunks: Iterable[tuple[int, _ManifestChunk]],
    path: str,
    report: _IssueLog,
    out: IO[bytes],
    *,
    rewrite: bool,
) -> int | None:
    """Write the manifest lines of ``chunks`` (each with the offset of its positions) in task order, a
    line only for the first task of an image; return how many, or None when a chunk failed.

    With ``rewrite`` (``out`` is a file) every line is written as it comes; a task whose image an earlier
    task has is found at the end, from the 64-bit hashes of the images (8 bytes a task, where a set of
    them would take about 70), and its line taken out again: the output is then what writing only first
    images gives, in memory that hardly grows with the tasks.
    """
    keys = array("q")  # with rewrite: the hash of each line's source-ref, in order
    where = array("q")  # with rewrite, of JSON Lines: each line's position (array items are 1, 2, ...)
    seen: set[int] = set()  # without rewrite: the hashes so far
    count = 0
    for offset, chunk in chunks:
        if chunk.failed:
            return None
        if not rewrite:
            count += _write_first_seen(chunk, seen, report, out)
        else:
            for number, issue in chunk.issues:
                report.add(offset + number, issue)
            if chunk.hashes:
                out.write(chunk.blob)
                out.write(b"\n")
                keys.extend(chunk.hashes)
                if report.unit == "line":
                    where.extend([offset + number for number in chunk.positions])
        if chunk.error is not None:  # after the tasks before it, as a stream (standard output) shows
            position, message, field_name, code = chunk.error
            raise TaskError(
                message, source=path, line=position, field=field_name, code=code, unit=report.unit
            )
    if not rewrite:
        return count
    repeated = _repeated_keys(keys)
    if not repeated:
        return len(keys)
    return len(keys) - _drop_repeats(keys, where if report.unit == "line" else None, repeated, report, out)


def _write_first_seen(chunk: _ManifestChunk, seen: set[int], report: Report, out: IO[bytes]) -> int:
    """Write the lines of ``chunk`` whose image is new, warning of the others in task order."""
    if seen.isdisjoint(chunk.hashes) and len(set(chunk.hashes)) == len(chunk.hashes):
        seen.update(chunk.hashes)
        for number, issue in chunk.issues:
            report.add(number, issue)
        if chunk.hashes:
            out.write(chunk.blob)
            out.write(b"\n")
        return len(chunk.hashes)
    issues = chunk.issues
    k = written = 0
    for line, key, number in zip(chunk.blob.split(b"\n"), chunk.hashes, chunk.positions, strict=True):
        while k < len(issues) and issues[k][0] <= number:
            report.add(issues[k][0], issues[k][1])
            k += 1
        if key in seen:
            report.add(number, _duplicate_issue(loads(line)["source-ref"]))
            continue
        seen.add(key)
        out.write(line)
        out.write(b"\n")
        written += 1
    return written


def _repeated_keys(keys: array[int]) -> set[int]:
    """The keys that occur more than once, found a slice of the key space at a time (small sets)."""
    parts = 64
    buckets = [array("q") for _ in range(parts)]
    for key in keys:
        buckets[key % parts].append(key)
    repeated: set[int] = set()
    for bucket in buckets:
        if len(set(bucket)) != len(bucket):
            seen: set[int] = set()
            for key in bucket:
                if key in seen:
                    repeated.add(key)
                seen.add(key)
    return repeated


def _drop_repeats(
    keys: array[int], where: array[int] | None, repeated: set[int], report: _IssueLog, out: IO[bytes]
) -> int:
    """Take the lines of later tasks of an image out of the written ``out``; warn of them in task order
    among the other issues. Returns how many lines went."""
    first: set[int] = set()
    drop: set[int] = set()
    for index, key in enumerate(keys):
        if key in repeated:
            if key in first:
                drop.add(index)
            first.add(key)
    out.flush()
    fd = out.fileno()
    warnings: list[tuple[int, Issue]] = []
    read_at = write_at = index = 0
    rest = b""
    while block := os.pread(fd, 1 << 20, read_at):
        read_at += len(block)
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        kept = []
        for line in lines:
            if index in drop:
                if len(warnings) < _SHOWN:
                    position = where[index] if where is not None else index + 1
                    warnings.append((position, _duplicate_issue(loads(line)["source-ref"])))
            else:
                kept.append(line)
            index += 1
        data = b"\n".join(kept) + b"\n" if kept else b""
        while data:
            written = os.pwrite(fd, data, write_at)
            write_at += written
            data = data[written:]
    os.ftruncate(fd, write_at)
    out.seek(write_at)
    # Both lists are in task order and an item's own issues come before its duplicate warning.
    report.items = sorted(report.items + warnings, key=lambda item: item[0])[:_SHOWN]
    report.total += len(drop)
    return len(drop)


_WRITE_OPTIONS = WriteOptions()
_TASK_SEPARATOR = b",\n"
_SPILL_DIR: str | None = None


def _set_write_options(options: WriteOptions, separator: bytes, spill_dir: str | None = None) -> None:
    global _WRITE_OPTIONS, _TASK_SEPARATOR, _SPILL_DIR
    _WRITE_OPTIONS, _TASK_SEPARATOR, _SPILL_DIR = options, separator, spill_dir


@dataclass(slots=True)
class _TaskChunk:
    """Serialized tasks of one chunk (joined by the output's separator) and what was found on the way."""

    blob: bytes = b""
    count: int = 0
    lines: int = 0
    issues: list[tuple[int, Issue]] = field(default_factory=list)
    choices: dict[str, None] = field(default_factory=dict)
    boxes: dict[str, None] = field(default_factory=dict)
    multiple: bool = False
    spilled: str | None = None  # the file holding ``blob`` when a worker wrote it to disk


# A RawLine's fields (number, data, too_long, length): the workers' lines, without a dataclass each.
_Line = tuple[int, bytes, bool, int]


def _range_lines(path: str, start: int, end: int, max_chars: int) -> list[_Line]:
    """The lines of ``[start, end)`` of ``path`` (``start`` at a line start, ``end`` at one or at the end
    of the file) as :func:`~converters.jsonio.iter_range_lines` gives them, read in one go."""
    with open(path, "rb") as stream:
        stream.seek(start)
        block = stream.read(end - start)
    pieces = block.split(b"\n")
    last = pieces.pop()  # what follows the final line break: nothing, or a last line without one
    byte_limit = max_chars * 4 + 2  # what iter_lines reads of a line at most
    lines: list[_Line] = []
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


def _tasks_of_range(path: str, start: int, end: int) -> _TaskChunk:
    """The tasks of a byte range; with a spill folder set, they go to a file there (named in
    ``spilled``) rather than back through the pool's pipe, and the parent copies that in the kernel."""
    chunk, tasks = _convert_lines(_range_lines(path, start, end, MAX_LINE))
    if _SPILL_DIR is None or not tasks:
        chunk.blob = _TASK_SEPARATOR.join(tasks)
        return chunk
    chunk.spilled = os.path.join(_SPILL_DIR, f"{start:016d}.part")
    separated = [_TASK_SEPARATOR] * (2 * len(tasks) - 1)
    separated[::2] = tasks
    with open(chunk.spilled, "wb", buffering=1 << 20) as part:
        part.writelines(separated)
    return chunk


def _tasks_of_lines(lines: Iterable[_Line]) -> _TaskChunk:
    """Manifest lines -> serialized Label Studio tasks, with what was wrong."""
    chunk, tasks = _convert_lines(lines)
    chunk.blob = _TASK_SEPARATOR.join(tasks)
    return chunk


def _convert_lines(lines: Iterable[_Line]) -> tuple[_TaskChunk, list[bytes]]:
    """Manifest lines -> serialized Label Studio tasks and what was wrong; runs in a worker."""
    out = _TaskChunk()
    tasks: list[bytes] = []
    for number, data, too_long, length in lines:
        out.lines = number
        if too_long:
            message = f"the line has {length:,} characters, over {MAX_LINE:,}"
            out.issues.append((number, _line_issue(codes.ERROR_INVALID_JSON_LINE, message)))
            continue
        if not data.strip():
            continue
        try:
            obj = loads(data)
        except ValueError as exc:
            pretty = data.strip() in (b"{", b"}")
            hint = " (pretty-printed JSON? a manifest needs one object per line)" if pretty else ""
            out.issues.append(
                (number, _line_issue(codes.ERROR_INVALID_JSON_LINE, f"broken JSON: {exc}{hint}"))
            )
            continue
        fast = line_task(obj, _WRITE_OPTIONS)
        if fast is not None:  # the common line, read and written without building its entry
            task, names, box_labels = fast
            out.choices.update(dict.fromkeys(names))
            out.boxes.update(dict.fromkeys(box_labels))
            out.multiple = out.multiple or len(set(names)) > 1
            tasks.append(dumps(task))
            continue
        parsed = parse_line(obj)
        for issue in parsed.issues:
            severity = Severity.WARNING if parsed.entry is not None else issue.severity
            out.issues.append((number, Issue(issue.code, issue.message, severity, field=issue.field)))
        entry = parsed.entry
        if entry is None:
            continue
        names = [label.name for label in entry.labels]
        out.choices.update(dict.fromkeys(names))
        out.boxes.update(dict.fromkeys(box.label for box in entry.boxes))
        out.multiple = out.multiple or len(set(names)) > 1
        # A line already in Rekognition's form is its own provenance; a normalized one is rebuilt.
        kept_line = obj if not parsed.normalized and not entry.extra else None
        tasks.append(dumps(entry_to_task(entry, _WRITE_OPTIONS, line=kept_line)))
    out.count = len(tasks)
    return out, tasks


class _HasLines(Protocol):
    lines: int


W = TypeVar("W", bound=_HasLines)


def _over_lines(
    path: str,
    stream: IO[bytes],
    per_lines: Callable[[Iterable[_Line]], W],
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
    for result in map_ranges(
        per_range, path, initializer=initializer, initargs=initargs, target=_RANGE_BYTES
    ):
        yield offset, result
        offset += result.lines


def cmd_manifest_to_ls(args: argparse.Namespace) -> int:
    """Ground Truth manifest -> Label Studio tasks (+ a label config covering every label)."""
    options = WriteOptions(image_meta=_load_meta(args.image_meta), dataset=args.dataset)
    report = Report(source=args.input)
    choices: dict[str, None] = {}
    boxes: dict[str, None] = {}
    multiple = False
    jsonl = args.output.endswith((".jsonl", ".ndjson"))
    separator = b"\n" if jsonl else b",\n"
    count = 0
    with ExitStack() as stack:
        stream = stack.enter_context(open_input(args.input))
        out = stack.enter_context(atomic_output(args.output))
        spill = None if args.input == "-" or args.output == "-" else _spill_dir(stack, args.output)
        if not jsonl:
            out.write(b"[\n")
        work = _over_lines(
            args.input,
            stream,
            _tasks_of_lines,
            _tasks_of_range,
            _set_write_options,
            (options, separator, spill),
        )
        for base, result in work:
            for number, issue in result.issues:
                report.add(base + number, issue)
            choices.update(result.choices)
            boxes.update(result.boxes)
            multiple = multiple or result.multiple
            if result.count:
                if count:
                    out.write(separator)
                if result.spilled is not None:
                    _append_file(out, result.spilled)
                else:
                    out.write(result.blob)
                count += result.count
        out.write((b"\n" if count else b"") if jsonl else b"\n]\n")
        errors = report.errors
        if errors and not args.skip_invalid:
            _say(report.format())
            raise CliError(
                f"{args.input}: {len(errors)} line(s) cannot be converted; nothing was written "
                "(--skip-invalid converts the others)"
            )
    _warn_all(report)
    if args.label_config_out:
        write_text(args.label_config_out, build_label_config(choices=choices, boxes=boxes, multiple=multiple))
    if args.json:
        _print_json(
            {
                "input": args.input,
                "output": args.output,
                "count": count,
                "warnings": len(report.warnings),
                "skipped_invalid": len(report.errors),
                "issues": _issues_json(report),
                "label_config": args.label_config_out,
                "labels": {"choices": list(choices), "boxes": list(boxes)},
            }
        )
    else:
        _say(f"wrote {count} tasks to {args.output}")
    return 0


def _spill_dir(stack: ExitStack, output: str) -> str:
    """A temporary folder beside ``output`` (same file system), removed when ``stack`` closes."""
    folder = os.path.dirname(os.path.abspath(output))
    return stack.enter_context(tempfile.TemporaryDirectory(prefix=".customlabels-", dir=folder))


def _append_file(out: IO[bytes], path: str) -> None:
    """Append the file ``path`` to ``out`` (a file) in the kernel, then remove it."""
    out.flush()
    with open(path, "rb") as part:
        size, target = os.fstat(part.fileno()).st_size, out.fileno()
        copied = 0
        while copied < size:
            step = os.copy_file_range(part.fileno(), target, size - copied)
            if step == 0:
                raise CliError(f"{path}: the temporary part ended early")
            copied += step
    os.unlink(path)


def _line_issue(code: str, message: str) -> Issue:
    return Issue(code, message, Severity.ERROR)


def cmd_coco_to_manifest(args: argparse.Namespace) -> int:
    """COCO object detection -> Ground Truth manifest."""
    with open_input(args.input) as stream:
        try:
            coco = loads(stream.read())
        except ValueError as exc:
            raise CliError(f"{args.input}: broken JSON: {exc}") from exc
    found: list[tuple[int, Issue]] = []
    with atomic_output(args.output) as out:
        count = write_json_lines(
            out,
            (
                entry_to_line(e)
                for e in coco_to_entries(
                    coco,
                    s3_prefix=args.s3_prefix,
                    job_name=args.job_name,
                    now=_now(),
                    source=args.input,
                    issues=found,
                )
            ),
        )
    report = Report(source=args.input, items=found, unit="item")
    _warn_all(report)
    if args.json:
        _print_json(
            {
                "input": args.input,
                "output": args.output,
                "count": count,
                "warnings": len(found),
                "issues": _issues_json(report),
            }
        )
    else:
        _say(f"wrote {count} manifest lines to {args.output}")
    return 0


def cmd_csv_to_manifest(args: argparse.Namespace) -> int:
    """CSV ``image,label,...`` -> Ground Truth manifest; with duplicates, the two CSVs AWS's script writes."""
    try:
        with open(args.input, encoding="utf-8", newline="") as f:
            rows = list(read_rows(f, source=args.input))
    except OSError as exc:
        raise CliError(f"{args.input}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CliError(f"{args.input}: not UTF-8 text: {exc}") from exc
    firsts, repeats = split_duplicates(rows)
    if repeats:
        stem = args.input[:-4] if args.input.lower().endswith(".csv") else args.input
        for path, chosen in ((f"{stem}-deduplicated.csv", firsts), (f"{stem}-duplicates.csv", repeats)):
            write_text(path, format_rows(chosen))
        lines = ", ".join(str(r.line) for r in repeats[:10])
        raise CliError(
            f"{args.input}: {len(repeats)} duplicate image(s) (lines {lines}); no manifest was made. "
            f"Wrote {stem}-deduplicated.csv (first occurrences) and {stem}-duplicates.csv"
        )
    now = _now()
    with atomic_output(args.output) as out:
        count = write_json_lines(
            out,
            (
                entry_to_line(row_to_entry(r, s3_prefix=args.s3_prefix, now=now, source=args.input))
                for r in rows
            ),
        )
    if args.json:
        _print_json({"input": args.input, "output": args.output, "count": count, "warnings": 0, "issues": []})
    else:
        _say(f"wrote {count} manifest lines to {args.output}")
    return 0


# -------------------------------------------------------------------------------------------- validate

_CHECK_LIMITS = codes.DEFAULT_LIMITS
_CHECK_META: dict[str, ImageMeta] = {}


def _set_check_state(limits: codes.Limits, meta: dict[str, ImageMeta]) -> None:
    global _CHECK_LIMITS, _CHECK_META
    _CHECK_LIMITS, _CHECK_META = limits, meta


@dataclass(slots=True)
class _CheckChunk:
    """Checked lines of one piece: their validation lines as one blob, and the counts as plain tuples."""

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    blob: bytes = b""
    lines: int = 0


def _checks_of_lines(lines: Iterable[_Line]) -> _CheckChunk:
    out = _CheckChunk()
    outputs = []
    for number, data, too_long, length in lines:
        check = None
        if not too_long:
            try:
                obj = loads(data)
            except ValueError:
                pass  # check_line reports it
            else:
                check = line_check(number, data, obj, limits=_CHECK_LIMITS, image_meta=_CHECK_META)
        if check is None:
            raw = RawLine(number, data, too_long, length)
            check = check_line(raw, limits=_CHECK_LIMITS, image_meta=_CHECK_META)
        outputs.append(check.output)
        out.rows.append((check.number, *check[2:]))
        out.lines = number
    out.blob = b"\n".join(outputs)
    return out


def _checks_of_range(path: str, start: int, end: int) -> _CheckChunk:
    return _checks_of_lines(_range_lines(path, start, end, _CHECK_LIMITS.max_line_chars))


def cmd_validate(args: argparse.Namespace) -> int:
    """Apply Rekognition's rules; write the summary and the manifests with validation results."""
    meta = _load_meta(args.image_meta)
    limits = codes.DEFAULT_LIMITS
    outdir = args.output_dir
    os.makedirs(outdir, exist_ok=True)
    sets = [("training", args.train)] + ([("testing", args.test)] if args.test else [])
    for _, path in sets:
        code = _file_error(path, limits)
        if code:
            document = file_error_summary(code[0], f"({path}: {code[1]})")
            write_text(os.path.join(outdir, "manifest_summary.json"), dumps(document).decode() + "\n")
            _say(f"{path}: {code[1]} [{code[0]}]")
            if args.json:
                _print_json(
                    {
                        "usable": False,
                        "output_dir": outdir,
                        "files": {"summary": os.path.join(outdir, "manifest_summary.json")},
                        "errors": {code[0]: 1},
                        "error": f"{path}: {code[1]} [{code[0]}]",
                    }
                )
            return 1
    results = {}
    with ExitStack() as stack:
        for name, path in sets:
            validator = ManifestValidator(limits=limits, image_meta=meta, collect_items=args.test is None)
            stream = stack.enter_context(open_input(path))
            out = stack.enter_context(
                atomic_output(os.path.join(outdir, f"{name}_manifest_with_validation.json"))
            )
            work = _over_lines(
                path, stream, _checks_of_lines, _checks_of_range, _set_check_state, (limits, meta)
            )
            for base, chunk in work:
                fates = validator.account_rows(chunk.rows, base)
                if fates is None:  # every line kept
                    if chunk.rows:
                        out.write(chunk.blob)
                        out.write(b"\n")
                    continue
                for fate, line in zip(fates, chunk.blob.split(b"\n"), strict=True):
                    if fate != SKIPPED:
                        out.write(line if fate == KEPT else mark_duplicate(line))
                        out.write(b"\n")
            results[name] = validator.finish()
        if results["training"].total == 0:
            raise CliError(
                f"{args.train}: {codes.message(codes.ERROR_EMPTY_MANIFEST)} [{codes.ERROR_EMPTY_MANIFEST}]"
            )
        if args.test and results["testing"].total == 0:
            raise CliError(
                f"{args.test}: {codes.message(codes.ERROR_EMPTY_MANIFEST)} [{codes.ERROR_EMPTY_MANIFEST}]"
            )
        summary = summarize(results["training"], results.get("testing"), limits=limits, seed=args.seed)
        write_text(os.path.join(outdir, "manifest_summary.json"), dumps(summary.document).decode() + "\n")
    if args.json:
        _print_json(_summary_json(summary.document, summary.usable, outdir, [name for name, _ in sets]))
    else:
        _print_summary(summary.document, summary.usable, outdir)
    return 0 if summary.usable else 1


def _file_error(path: str, limits: codes.Limits) -> tuple[str, str] | None:
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        return codes.ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT, exc.strerror or str(exc)
    if size > limits.max_manifest_bytes:
        return codes.ERROR_MANIFEST_SIZE_TOO_LARGE, f"{size:,} bytes, over {limits.max_manifest_bytes:,}"
    if size == 0:
        return codes.ERROR_EMPTY_MANIFEST, "the file is empty"
    return None


def _summary_json(doc: dict[str, Any], usable: bool, outdir: str, sets: list[str]) -> dict[str, Any]:
    """``validate --json``: usable or not, each dataset's counts, its dataset-level error codes and the
    error codes on its lines (lines per code, read back from its validation manifest), the files."""
    files = {"summary": os.path.join(outdir, "manifest_summary.json")}
    out: dict[str, Any] = {"usable": usable, "output_dir": outdir, "files": files}
    for name in ("training", "testing"):
        stats = doc["statistics"].get(name) or {}
        block: dict[str, Any] = {
            "use_case": stats.get("use_case"),
            "lines": stats.get("total_json_lines", 0),
            "valid": stats.get("valid_json_lines", 0),
            "invalid": stats.get("invalid_json_lines", 0),
            "ignored": stats.get("ignored_json_lines", 0),
            "lines_with_errors": len(stats.get("error_json_line_indices") or ()),
            "errors": _code_counts(stats.get("errors") or ()),
        }
        if name in sets:
            path = os.path.join(outdir, f"{name}_manifest_with_validation.json")
            files[name] = path
            block["line_errors"] = _line_error_codes(path)
        else:
            block["auto_split"] = True  # the test set is 20% of the training manifest
        out[name] = block
    out["errors"] = _code_counts(doc.get("errors") or ())
    return out


def _code_counts(errors: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for error in errors:
        counts[error["code"]] = counts.get(error["code"], 0) + 1
    return counts


def _line_error_codes(path: str) -> dict[str, int]:
    """Lines of a validation manifest per error code (a line counted once per code it carries)."""
    counts: dict[str, int] = {}
    with open(path, "rb") as stream:
        for data in stream:
            if b'"errors"' not in data:
                continue
            for code in _codes_in(loads(data)):
                counts[code] = counts.get(code, 0) + 1
    return dict(sorted(counts.items()))


def _codes_in(value: Any) -> set[str]:
    """The codes under every ``errors`` list in a validation line (line, attribute, annotation)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "errors" and isinstance(item, list):
                found.update(e["code"] for e in item if isinstance(e, dict) and "code" in e)
            else:
                found |= _codes_in(item)
    elif isinstance(value, list):
        for item in value:
            found |= _codes_in(item)
    return found


def _print_summary(doc: dict[str, object], usable: bool, outdir: str) -> None:
    stats = doc["statistics"]
    assert isinstance(stats, dict)
    for name in ("training", "testing"):
        s = stats.get(name)
        if not s or not s.get("total_json_lines"):
            continue
        print(
            f"{name}: {s['total_json_lines']} lines, {s['valid_json_lines']} valid, "
            f"{s['invalid_json_lines']} invalid, {s['ignored_json_lines']} ignored; use case {s['use_case']}"
        )
        if s["error_json_line_indices"]:
            shown = ", ".join(str(i) for i in s["error_json_line_indices"][:20])
            more = "" if len(s["error_json_line_indices"]) <= 20 else ", ..."
            print(f"  lines with errors: {shown}{more}")
        for e in s["errors"]:
            print(f"  {e['code']}: {e['message']}")
    errors = doc.get("errors")
    assert isinstance(errors, list)
    for e in errors:
        print(f"{e['code']}: {e['message']}")
    print(f"{'usable' if usable else 'NOT usable'} for training; details in {outdir}/")


# ----------------------------------------------------------------------------------------------- split


def _read_items(path: str) -> list[SplitItem]:
    items = []
    report = Report(source=path)
    with open_input(path) as stream:
        for raw in iter_lines(stream, max_chars=MAX_LINE):
            if raw.too_long or not raw.data.strip():
                report.add(
                    raw.number, _line_issue(codes.ERROR_INVALID_JSON_LINE, "the line is empty or too long")
                )
                continue
            try:
                parsed = parse_line(loads(raw.data))
            except ValueError as exc:
                report.add(raw.number, _line_issue(codes.ERROR_INVALID_JSON_LINE, f"broken JSON: {exc}"))
                continue
            if parsed.entry is None:
                for issue in parsed.issues:
                    report.add(raw.number, issue)
                continue
            items.append(SplitItem(parsed.entry.source_ref, frozenset(parsed.entry.label_names)))
    if report.errors:
        _say(report.format())
        raise CliError(
            f"{path}: {len(report.errors)} line(s) are not valid manifest lines; nothing was written"
        )
    return items


def cmd_split(args: argparse.Namespace) -> int:
    """Split a manifest into train and test, stratified by label, stable for a seed."""
    if bool(args.keep_train) != bool(args.keep_test):
        raise CliError("--keep-train and --keep-test go together")
    keep: dict[str, str] = {}
    for side, path in (("train", args.keep_train), ("test", args.keep_test)):
        if path:
            for item in _read_items(path):
                if keep.setdefault(item.source_ref, side) != side:
                    raise CliError(f"{item.source_ref} is in both --keep-train and --keep-test")
    items = _read_items(args.input)
    short = labels_short_of(items)
    if short:
        names = ", ".join(f"{n} ({c})" for n, c in list(short.items())[:10])
        _say(
            f"warning: {codes.message(codes.ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE)} "
            f"[{codes.ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE}] labels with fewer than 2 images stay in "
            f"train: {names}"
        )
    assignment = split(items, test_fraction=args.test_fraction, seed=args.seed, keep=keep)
    counts = {"train": 0, "test": 0}
    with (
        open_input(args.input) as stream,
        atomic_output(args.train_out) as train,
        atomic_output(args.test_out) as test,
    ):
        outs = {"train": train, "test": test}
        seen: set[str] = set()
        for raw in iter_lines(stream, max_chars=MAX_LINE):
            if not raw.data.strip():
                continue
            ref = loads(raw.data)["source-ref"]
            if ref in seen:
                continue
            seen.add(ref)
            side = assignment[ref]
            outs[side].write(raw.data)
            outs[side].write(b"\n")
            counts[side] += 1
    if args.json:
        _print_json(
            {
                "input": args.input,
                "train": {"output": args.train_out, "count": counts["train"]},
                "test": {"output": args.test_out, "count": counts["test"]},
                "test_fraction": args.test_fraction,
                "seed": args.seed,
                "labels_short": dict(short),
            }
        )
    else:
        _say(
            f"train: {counts['train']} entries -> {args.train_out}; test: {counts['test']} entries -> {args.test_out}"
        )
    return 0


# ---------------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``customlabels``."""
    parser = argparse.ArgumentParser(
        prog="customlabels",
        description="Rekognition Custom Labels datasets on Label Studio: convert, validate, split.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    convert = sub.add_parser(
        "convert", help="convert between Label Studio, Ground Truth manifests, COCO, CSV"
    )
    conv = convert.add_subparsers(dest="conversion", metavar="CONVERSION")

    p = conv.add_parser("ls-to-manifest", help="Label Studio tasks -> Ground Truth manifest")
    p.add_argument(
        "input", metavar="INPUT", help="Label Studio JSON export, JSON Lines of tasks, or - for stdin"
    )
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT", help="manifest to write (JSON Lines)")
    p.add_argument(
        "--label-config", metavar="CONFIG.xml", help="labeling config: decides which control is which"
    )
    p.add_argument("--image-meta", metavar="META.jsonl", help="stored size and EXIF orientation per image")
    p.add_argument("--job-name", metavar="NAME", help="job-name of labels made in Label Studio")
    p.add_argument("--s3-prefix", metavar="s3://bucket/prefix/", help="maps image URLs that are not s3://")
    _json_flag(p)
    p.set_defaults(func=cmd_ls_to_manifest)

    p = conv.add_parser("manifest-to-ls", help="Ground Truth manifest -> Label Studio tasks")
    p.add_argument("input", metavar="INPUT", help="manifest (JSON Lines), or - for stdin")
    p.add_argument(
        "-o", "--output", required=True, metavar="OUTPUT", help="tasks to write (JSON; .jsonl: JSON Lines)"
    )
    p.add_argument(
        "--label-config-out", metavar="CONFIG.xml", help="write a labeling config covering every label"
    )
    p.add_argument("--image-meta", metavar="META.jsonl", help="stored size and EXIF orientation per image")
    p.add_argument("--dataset", choices=("train", "test"), help="mark every task as this dataset")
    p.add_argument("--skip-invalid", action="store_true", help="convert the valid lines when some are not")
    _json_flag(p)
    p.set_defaults(func=cmd_manifest_to_ls)

    p = conv.add_parser("coco-to-manifest", help="COCO object detection -> Ground Truth manifest")
    p.add_argument("input", metavar="COCO.json")
    p.add_argument("--s3-prefix", required=True, metavar="s3://bucket/prefix/", help="where the images are")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT")
    p.add_argument("--job-name", metavar="NAME")
    _json_flag(p)
    p.set_defaults(func=cmd_coco_to_manifest)

    p = conv.add_parser("csv-to-manifest", help="CSV image,label,... -> Ground Truth manifest")
    p.add_argument("input", metavar="INPUT.csv")
    p.add_argument("--s3-prefix", metavar="s3://bucket/prefix/", help="prepended to the image column")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT")
    _json_flag(p)
    p.set_defaults(func=cmd_csv_to_manifest)

    p = sub.add_parser("validate", help="apply Rekognition's validation rules to train (and test) manifests")
    p.add_argument("train", metavar="TRAIN.manifest")
    p.add_argument(
        "--test", metavar="TEST.manifest", help="test manifest; without it the train set is auto-split"
    )
    p.add_argument(
        "--output-dir", default="validation", metavar="DIR", help="where results go (default: validation)"
    )
    p.add_argument("--image-meta", metavar="META.jsonl", help="stored size, format and bytes per image")
    p.add_argument("--seed", type=int, default=0, help="seed of the auto-split (default 0)")
    _json_flag(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("split", help="stratified, stable train/test split of a manifest")
    p.add_argument("input", metavar="INPUT.manifest")
    p.add_argument("--train-out", required=True, metavar="TRAIN.manifest")
    p.add_argument("--test-out", required=True, metavar="TEST.manifest")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of each label sent to test (0.2)")
    p.add_argument("--seed", type=int, default=0, help="same input and seed give the same split (default 0)")
    p.add_argument("--keep-train", metavar="OLD_TRAIN.manifest", help="entries that stay in train")
    p.add_argument("--keep-test", metavar="OLD_TEST.manifest", help="entries that stay in test")
    _json_flag(p)
    p.set_defaults(func=cmd_split)

    add_parsers(sub)
    localstack.add_parsers(sub)
    return parser


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print the result as one JSON document on standard output"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``customlabels``; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "json", False) and "-" in (
        getattr(args, "output", None),
        getattr(args, "train_out", None),
        getattr(args, "test_out", None),
    ):
        parser.error("--json prints to standard output: give the output a file name, not -")
    func = getattr(args, "func", None)
    if func is None:
        if args.command in ("convert", "project", "dataset"):
            parser.parse_args([args.command, "--help"])
        parser.print_help()
        return 0
    if getattr(func, "__module__", "") in SERVICE_MODULES:
        return run_service_command(func, args)
    # A command is a batch run: its objects die young or live to its end, and none form cycles worth
    # collecting, so the cyclic collector (which would walk every live object again and again: a
    # quarter of validate's own time at 250,000 lines) stays off for it, in its worker processes too.
    collecting = gc.isenabled()
    gc.disable()
    try:
        code: int = func(args)
    except (ConversionError, CliError) as exc:
        if getattr(args, "json", False):
            print(json.dumps({"status": "error", "error": str(exc)}), flush=True)
        _say(f"error: {exc}")
        return 1
    except BrokenPipeError:
        return 1
    finally:
        if collecting:
            gc.enable()
    return code


if __name__ == "__main__":
    sys.exit(main())
