"""``customlabels convert ...``: Label Studio tasks, Ground Truth manifests, COCO and CSV.

ls-to-manifest and manifest-to-ls run their per-task and per-line work in worker processes (see
:mod:`plugin.cli.fastpath`); their output is the same as one process reading the input as a stream.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any

from converters import codes
from converters.coco import coco_to_entries
from converters.csvfile import format_rows, read_rows, row_to_entry, split_duplicates
from converters.errors import ConversionError, Issue, Report, Severity, TaskError
from converters.fastlines import line_task
from converters.jsonio import dumps, iter_json_records, loads, write_json_lines
from converters.labelconfig import build_label_config
from converters.labelstudio import ReadOptions, WriteOptions, entry_to_task
from converters.manifest import entry_to_line, parse_line
from plugin.cli.common import (
    MAX_LINE,
    add_json_flag,
    issues_json,
    line_error,
    load_image_meta,
    load_label_config,
    now,
    print_json,
    say,
    warn_all,
)
from plugin.cli.fastpath import (
    Line,
    ManifestChunk,
    TaskLayout,
    find_task_layout,
    manifest_chunks_of_ranges,
    manifest_line,
    map_manifest_lines,
    over_line_limit,
    range_lines,
    set_read_options,
)
from plugin.fileio import CliError, atomic_output, open_input, write_text
from plugin.pipelines import chunked, ordered_map

_SHOWN = 20  # issues a report prints (Report.format's default limit)


@dataclass(slots=True)
class IssueLog(Report):
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
        label_config=load_label_config(args.label_config),
        image_meta=load_image_meta(args.image_meta),
        job_name=args.job_name,
        s3_prefix=args.s3_prefix,
        now=now(),
    )
    with open_input(args.input) as stream, atomic_output(args.output) as out:
        # A file: lines of repeated images can be taken out at the end.
        count, report = ls_to_manifest(args.input, stream, options, out, rewrite=args.output != "-")
    warn_all(report)
    return manifest_written(args, count, report.total, report)


def manifest_written(args: argparse.Namespace, count: int, warnings: int, report: Report | None) -> int:
    """The end of a conversion to a manifest: its JSON document, or a line on standard error."""
    if args.json:
        print_json(
            {
                "input": args.input,
                "output": args.output,
                "count": count,
                "warnings": warnings,
                "issues": issues_json(report) if report is not None else [],
            }
        )
    else:
        say(f"wrote {count} manifest lines to {args.output}")
    return 0


def ls_to_manifest(
    path: str, stream: IO[bytes], options: ReadOptions, out: IO[bytes], *, rewrite: bool
) -> tuple[int, IssueLog]:
    """Write the manifest lines of the Label Studio tasks of ``path`` (read from ``stream``) to ``out``;
    return how many and the issues found. With ``rewrite`` (``out`` is a file) a file whose tasks lie
    one a line goes by the fast path; whatever that cannot read exactly as the streaming reader would
    sends the whole file to the streaming reader."""
    report = IssueLog(source=path)
    layout = find_task_layout(path) if rewrite else None
    count = ls_to_manifest_ranges(path, layout, options, report, out) if layout else None
    if count is None:  # read as a stream, here, exactly as Label Studio's JSON is parsed
        if layout is not None:
            out.seek(0)
            out.truncate()
            report = IssueLog(source=path)
        count = ls_to_manifest_stream(path, stream, options, report, out, rewrite=rewrite)
    return count, report


def ls_to_manifest_stream(
    path: str, stream: IO[bytes], options: ReadOptions, report: IssueLog, out: IO[bytes], *, rewrite: bool
) -> int:
    """The general way: tasks from the streaming reader of ``stream``, converted in chunks by worker
    processes; return the lines written."""

    def tasks() -> Iterator[tuple[int, bytes]]:
        for record in iter_json_records(stream, source=path):
            report.unit = record.unit
            yield record.position, dumps(record.value)

    work = ordered_map(
        _manifest_of_tasks, chunked(tasks(), 1000), initializer=set_read_options, initargs=(options,)
    )
    count = write_manifest(((0, chunk) for _, chunk in work), path, report, out, rewrite=rewrite)
    assert count is not None
    return count


def ls_to_manifest_ranges(
    path: str, layout: TaskLayout, options: ReadOptions, report: IssueLog, out: IO[bytes]
) -> int | None:
    """The fast path: convert with workers reading line ranges; return the lines written, or None to
    start over with the streaming reader."""
    report.unit = layout.unit
    return write_manifest(manifest_chunks_of_ranges(path, layout, options), path, report, out, rewrite=True)


def _manifest_of_tasks(chunk: list[tuple[int, bytes]]) -> ManifestChunk:
    """Label Studio tasks (position, JSON bytes) -> manifest lines; runs in a worker. The tasks after
    one that cannot be converted are still read (a failure of another kind among them is raised as
    before) but not kept."""
    out = ManifestChunk()
    lines: list[bytes] = []
    for position, raw in chunk:
        issues: list[Issue] = []
        try:
            task = loads(raw)
            data, ref = manifest_line(task, issues)
            if over_line_limit(data):
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


def write_manifest(
    chunks: Iterable[tuple[int, ManifestChunk]],
    path: str,
    report: IssueLog,
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


def _write_first_seen(chunk: ManifestChunk, seen: set[int], report: Report, out: IO[bytes]) -> int:
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
    keys: array[int], where: array[int] | None, repeated: set[int], report: IssueLog, out: IO[bytes]
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


def _tasks_of_range(path: str, start: int, end: int) -> _TaskChunk:
    """The tasks of a byte range; with a spill folder set, they go to a file there (named in
    ``spilled``) rather than back through the pool's pipe, and the parent copies that in the kernel."""
    chunk, tasks = _convert_lines(range_lines(path, start, end, MAX_LINE))
    if _SPILL_DIR is None or not tasks:
        chunk.blob = _TASK_SEPARATOR.join(tasks)
        return chunk
    chunk.spilled = os.path.join(_SPILL_DIR, f"{start:016d}.part")
    separated = [_TASK_SEPARATOR] * (2 * len(tasks) - 1)
    separated[::2] = tasks
    with open(chunk.spilled, "wb", buffering=1 << 20) as part:
        part.writelines(separated)
    return chunk


def _tasks_of_lines(lines: Iterable[Line]) -> _TaskChunk:
    """Manifest lines -> serialized Label Studio tasks, with what was wrong."""
    chunk, tasks = _convert_lines(lines)
    chunk.blob = _TASK_SEPARATOR.join(tasks)
    return chunk


def _convert_lines(lines: Iterable[Line]) -> tuple[_TaskChunk, list[bytes]]:
    """Manifest lines -> serialized Label Studio tasks and what was wrong; runs in a worker."""
    out = _TaskChunk()
    tasks: list[bytes] = []
    for number, data, too_long, length in lines:
        out.lines = number
        if too_long:
            message = f"the line has {length:,} characters, over {MAX_LINE:,}"
            out.issues.append((number, line_error(codes.ERROR_INVALID_JSON_LINE, message)))
            continue
        if not data.strip():
            continue
        try:
            obj = loads(data)
        except ValueError as exc:
            pretty = data.strip() in (b"{", b"}")
            hint = " (pretty-printed JSON? a manifest needs one object per line)" if pretty else ""
            out.issues.append(
                (number, line_error(codes.ERROR_INVALID_JSON_LINE, f"broken JSON: {exc}{hint}"))
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


def cmd_manifest_to_ls(args: argparse.Namespace) -> int:
    """Ground Truth manifest -> Label Studio tasks (+ a label config covering every label)."""
    options = WriteOptions(image_meta=load_image_meta(args.image_meta), dataset=args.dataset)
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
        work = map_manifest_lines(
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
            say(report.format())
            raise CliError(
                f"{args.input}: {len(errors)} line(s) cannot be converted; nothing was written "
                "(--skip-invalid converts the others)"
            )
    warn_all(report)
    if args.label_config_out:
        write_text(args.label_config_out, build_label_config(choices=choices, boxes=boxes, multiple=multiple))
    if args.json:
        print_json(
            {
                "input": args.input,
                "output": args.output,
                "count": count,
                "warnings": len(report.warnings),
                "skipped_invalid": len(report.errors),
                "issues": issues_json(report),
                "label_config": args.label_config_out,
                "labels": {"choices": list(choices), "boxes": list(boxes)},
            }
        )
    else:
        say(f"wrote {count} tasks to {args.output}")
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
                    now=now(),
                    source=args.input,
                    issues=found,
                )
            ),
        )
    report = Report(source=args.input, items=found, unit="item")
    warn_all(report)
    return manifest_written(args, count, len(found), report)


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
    created = now()
    with atomic_output(args.output) as out:
        count = write_json_lines(
            out,
            (
                entry_to_line(row_to_entry(r, s3_prefix=args.s3_prefix, now=created, source=args.input))
                for r in rows
            ),
        )
    return manifest_written(args, count, 0, None)


def add_parsers(sub: Any) -> None:
    """Add ``convert`` and its conversions to ``customlabels``' subparsers."""
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
    add_json_flag(p)
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
    add_json_flag(p)
    p.set_defaults(func=cmd_manifest_to_ls)

    p = conv.add_parser("coco-to-manifest", help="COCO object detection -> Ground Truth manifest")
    p.add_argument("input", metavar="COCO.json")
    p.add_argument("--s3-prefix", required=True, metavar="s3://bucket/prefix/", help="where the images are")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT")
    p.add_argument("--job-name", metavar="NAME")
    add_json_flag(p)
    p.set_defaults(func=cmd_coco_to_manifest)

    p = conv.add_parser("csv-to-manifest", help="CSV image,label,... -> Ground Truth manifest")
    p.add_argument("input", metavar="INPUT.csv")
    p.add_argument("--s3-prefix", metavar="s3://bucket/prefix/", help="prepended to the image column")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT")
    add_json_flag(p)
    p.set_defaults(func=cmd_csv_to_manifest)
