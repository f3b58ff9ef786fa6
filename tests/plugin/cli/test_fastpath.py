"""The byte-level fast path (plugin.cli.fastpath) gives exactly what the general readers give.

ls-to-manifest: for generated Label Studio exports (a JSON array on one line as Label Studio writes it,
compact or with Python's spaces; one task a line as our exports lay it out; pretty-printed; JSON Lines;
every key of a real export, annotations made from predictions that they carry, drafts, objects shaped
like tasks nested in a task's data, unicode, repeated ids and images, bad tasks), the manifest bytes and the issues report of the fast path equal those of the
general reader: ``converters.jsonio``'s streaming reader and ``converters.labelstudio.task_to_entry``,
one task after the other, without fastlines' shortcut; the command's streaming path and the whole
command (which falls back when the fast path steps aside) give them too.

validate and manifest-to-ls: the lines the range reader gives, range after range, are those of
``converters.jsonio.iter_lines`` over the whole file; validate's range checker equals the general
checker line by line.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from converters import codes
from converters.errors import ConversionError, Issue, Severity, TaskError
from converters.jsonio import dumps, iter_json_records, iter_lines, loads
from converters.labelconfig import parse_label_config
from converters.labelstudio import ReadOptions, task_to_entry
from converters.manifest import entry_to_line
from converters.validation import check_line
from plugin.cli import fastpath, main
from plugin.cli.convert import IssueLog, ls_to_manifest, ls_to_manifest_ranges, ls_to_manifest_stream
from plugin.cli.validate import check_lines, check_range, set_check_state
from plugin.pipelines import line_ranges
from tests.builders import as_exported, choices, rect, task
from tests.plugin.cli.helpers import SAMPLES

NOW = "2026-01-02T03:04:05.000006"
SHOWN = 20  # the issues a report keeps (IssueLog)

# --------------------------------------------------------------------------------- the general reader


def general_manifest(path: str, options: ReadOptions) -> tuple[Any, ...]:
    """ls-to-manifest the general way: ``(manifest bytes, issues, unit)``, or ``("error", message)``.

    The tasks as the streaming reader hands them over (all read before any is converted, as the command
    reads a chunk of up to 1,000 tasks before converting it: a broken JSON further on is found first),
    each converted by ``task_to_entry``; a line only for the first task of an image, a warning for each
    later one (after that task's own issues)."""
    lines: list[bytes] = []
    issues: list[tuple[int, Issue]] = []
    seen: set[str] = set()
    unit = "line"
    try:
        with open(path, "rb") as stream:
            records = list(iter_json_records(stream, source=path))
            for record in records:
                unit = record.unit
                found: list[Issue] = []
                try:
                    entry = task_to_entry(loads(dumps(record.value)), options, found)
                except ConversionError as exc:
                    raise TaskError(
                        exc.message,
                        source=path,
                        line=record.position,
                        field=exc.field,
                        code=exc.code,
                        unit=unit,
                    ) from exc
                data = dumps(entry_to_line(entry))  # far below Rekognition's line limit here
                issues.extend((record.position, issue) for issue in found)
                if entry.source_ref in seen:
                    message = f"{entry.source_ref} is on an earlier task; this task is skipped"
                    duplicate = Issue(
                        codes.DUPLICATE_SOURCE_REF, message, Severity.WARNING, field="data.image"
                    )
                    issues.append((record.position, duplicate))
                    continue
                seen.add(entry.source_ref)
                lines.append(data + b"\n")
    except ConversionError as exc:
        return ("error", str(exc))
    return b"".join(lines), issues, unit


def report_of(issues: list[tuple[int, Issue]], unit: str, path: str) -> tuple[Any, ...]:
    """What a report of these issues shows: its total, its first issues, its text."""
    log = IssueLog(source=path, unit=unit)
    for number, issue in issues:
        log.add(number, issue)
    return log.total, log.items, log.format()


def shown(log: IssueLog) -> tuple[Any, ...]:
    return log.total, log.items[:SHOWN], log.format()


@contextmanager
def small_ranges(size: int) -> Iterator[None]:
    """Ranges of about ``size`` bytes, worked in this process (no pool per example)."""
    with (
        mock.patch.object(fastpath, "RANGE_BYTES", size),
        mock.patch.dict(os.environ, {"CUSTOMLABELS_WORKERS": "1"}),
    ):
        yield


# ------------------------------------------------------------------------------ generated exports

names = st.sampled_from(["cat", "dog", "Ünïcødé", "猫", "a b", "x" * 40])
images = st.sampled_from(
    [
        "s3://bkt/pets/cat_001.jpg",
        "s3://bkt/pets/dog_001.jpg",
        "s3://bkt/ünï/猫 1.jpg",
        "s3://bkt/pets/cat_001.jpg",  # twice as likely: repeated images
    ]
)
other_images = st.sampled_from(["/data/upload/1/abc-cat.jpg", "https://example.com/x.jpg"])  # --s3-prefix
percent = st.floats(min_value=-10, max_value=110, allow_nan=False, width=32)


@st.composite
def results(draw: st.DrawFn) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if draw(st.booleans()):
        out.append(choices(*draw(st.lists(names, min_size=1, max_size=3))))
    for index in range(draw(st.integers(0, 2))):
        box = rect(draw(names), draw(percent), draw(percent), draw(percent), draw(percent), rid=f"r{index}")
        if draw(st.booleans()):
            box["value"]["rotation"] = draw(st.sampled_from([0, 30, 90, 400]))
        out.append(box)
    if draw(st.integers(0, 29)) == 0:  # known with the labeling config, an error without it
        out.append(
            {
                "id": "t",
                "from_name": "comment",
                "to_name": "image",
                "type": "textarea",
                "value": {"text": ["ü"]},
            }
        )
    return out


BAD_TASKS = ["no image", "no data", "not an object", "odd result", "big number"]


@st.composite
def label_studio_task(draw: st.DrawFn) -> Any:
    # About one task in 40 is bad, so that most exports convert and some do not.
    kind = draw(st.sampled_from(BAD_TASKS)) if draw(st.integers(0, 39)) == 0 else "good"
    if kind == "not an object":
        return draw(st.sampled_from([5, "task", [], None]))
    image = draw(other_images if draw(st.integers(0, 39)) == 0 else images)
    built = task(image, *draw(results()), tid=draw(st.integers(1, 4)))  # ids repeat
    if draw(st.booleans()):
        built["data"]["dataset"] = draw(st.sampled_from(["train", "test", "valid"]))
    if draw(st.integers(0, 7)) == 0:  # where Label Studio's one-line layout may be cut: inside a task
        built["data"]["history"] = [{"id": 1, "annotations": []}, {"id": 2, "annotations": [{"id": 3}]}]
    if kind == "big number":
        built["meta"] = {"big": 2**70, "note": "ünï"}  # beyond 64 bits: the JSON readers refuse it
    if draw(st.integers(0, 9)) == 0:
        built["annotations"].append({"id": 99, "was_cancelled": True, "result": []})
    if kind == "no image":
        del built["data"]["image"]
    elif kind == "no data":
        del built["data"]
    elif kind == "odd result" and built["annotations"]:
        built["annotations"][0]["result"].append({"type": "polygonlabels", "value": {"points": [[1, 2]]}})
    if draw(st.booleans()):
        return as_exported(built, from_prediction=draw(st.booleans()), draft=draw(st.integers(0, 3)) == 0)
    return built


def serialized(tasks: list[Any], form: str, ascii_only: bool) -> bytes:
    """An export of ``tasks`` in one of the forms Label Studio and other tools write."""
    one = [json.dumps(t, ensure_ascii=ascii_only) for t in tasks]
    if form == "array, one a line":  # Label Studio's own layout
        text = "[\n" + ",\n".join(one) + "\n]\n"
    elif form == "array, one a line, CRLF":
        text = "[\r\n" + ",\r\n".join(one) + "\r\n]\r\n"
    elif form == "array, pretty":
        text = json.dumps(tasks, indent=2, ensure_ascii=ascii_only) + "\n"
    elif form == "array, one line":
        text = json.dumps(tasks, ensure_ascii=ascii_only)
    elif form == "array, one line, Label Studio's":  # its export: compact, no final line break
        text = json.dumps(tasks, ensure_ascii=ascii_only, separators=(",", ":"))
    elif form == "json lines":
        text = "".join(line + "\n" for line in one)
    elif form == "json lines, blank lines, no final break":
        text = "\n\n".join(one)
    else:
        raise AssertionError(form)
    return text.encode("utf-8")


FORMS = [
    "array, one line, Label Studio's",
    "array, one a line",
    "array, one a line, CRLF",
    "array, pretty",
    "array, one line",
    "json lines",
    "json lines, blank lines, no final break",
]


@settings(max_examples=150, deadline=None)
@given(
    tasks=st.lists(label_studio_task(), min_size=1, max_size=14),
    form=st.sampled_from(FORMS),
    ascii_only=st.booleans(),
    range_size=st.sampled_from([1, 200, 900, 2 << 20]),
    s3_prefix=st.sampled_from([None, "s3://bkt/imports/"]),
    job_name=st.sampled_from([None, "labels-job"]),
    with_config=st.booleans(),
)
def test_ls_to_manifest_fast_path_equals_the_general_reader(
    tasks: list[Any],
    form: str,
    ascii_only: bool,
    range_size: int,
    s3_prefix: str | None,
    job_name: str | None,
    with_config: bool,
) -> None:
    config = parse_label_config((SAMPLES / "label_config.xml").read_text()) if with_config else None
    options = ReadOptions(label_config=config, s3_prefix=s3_prefix, job_name=job_name, now=NOW)
    with tempfile.TemporaryDirectory() as folder, small_ranges(range_size):
        path = os.path.join(folder, "export.json")
        Path(path).write_bytes(serialized(tasks, form, ascii_only))
        expected = general_manifest(path, options)
        event(f"general reader: {'error' if expected[0] == 'error' else 'manifest'}")

        layout = fastpath.find_task_layout(path)
        if form.startswith(("array, one a line", "json lines")):
            assert layout is not None
        first = tasks[0]
        if (
            form.startswith("array, one line")
            and isinstance(first, dict)
            and list(first)[:2] == LS_HEAD
            and type(first["id"]) is int
        ):
            assert layout is not None and layout.cut == "task"
        if layout is not None:
            report = IssueLog(source=path)
            with open(os.path.join(folder, "fast.manifest"), "w+b") as out:
                try:
                    count = ls_to_manifest_ranges(path, layout, options, report, out)
                except ConversionError as exc:  # the fast path leaves every failure to the streaming reader
                    raise AssertionError(f"the fast path raised {exc!r}") from exc
                event(f"fast path, cut {layout.cut}: {'stepped aside' if count is None else 'took the file'}")
                if count is not None:
                    assert expected[0] != "error"
                    out.seek(0)
                    manifest, issues, unit = expected
                    assert out.read() == manifest
                    assert count == manifest.count(b"\n")
                    assert report.unit == unit
                    assert shown(report) == report_of(issues, unit, path)
                    event(f"fast path: {'with' if report.total else 'no'} warnings")

        for rewrite in (True, False):  # the command's own streaming path, to a file and to a stream
            report = IssueLog(source=path)
            with open(path, "rb") as stream, open(os.path.join(folder, f"s{rewrite}"), "w+b") as out:
                try:
                    count = ls_to_manifest_stream(path, stream, options, report, out, rewrite=rewrite)
                except ConversionError as exc:
                    assert expected == ("error", str(exc))
                    continue
                out.seek(0)
                manifest, issues, unit = expected
                assert out.read() == manifest
                assert count == manifest.count(b"\n")
                assert shown(report) == report_of(issues, unit, path)

        with open(path, "rb") as stream, open(os.path.join(folder, "cmd.manifest"), "w+b") as out:
            try:
                count, report = ls_to_manifest(path, stream, options, out, rewrite=True)
            except ConversionError as exc:
                assert expected == ("error", str(exc))
            else:
                out.seek(0)
                assert out.read() == expected[0]
                assert shown(report) == report_of(expected[1], expected[2], path)


LS_HEAD = ["id", "annotations"]


@pytest.mark.parametrize(
    ("form", "cut", "nested", "range_size"),
    [
        ("array, one a line", "line", False, 700),
        ("array, one line, Label Studio's", "task", False, 700),
        ("array, one line", "task", False, 700),
        ("array, one line, Label Studio's", "task", True, 2 << 20),
    ],
)
def test_the_fast_path_takes_a_real_shaped_export(
    tmp_path: Path, form: str, cut: str, nested: bool, range_size: int
) -> None:
    """Not a vacuous property: a clean export with every key of a real one, in our layout and in Label
    Studio's (compact, or with Python's spaces), goes by the fast path; within a range, pieces cut at
    objects of a task's shape nested in a task are joined again."""
    tasks = []
    for i in range(60):
        built = task(f"s3://bkt/ü/{i % 50}.jpg", choices("cat"), rect("猫", 10, 10, 20, 20), tid=i)
        if nested and i % 7 == 0:
            built["data"]["history"] = [{"id": 1, "annotations": []}, {"id": 2, "annotations": []}]
        tasks.append(as_exported(built, from_prediction=i % 4 == 0, draft=i % 5 == 0))
    path = tmp_path / "export.json"
    path.write_bytes(serialized(tasks, form, False))
    options = ReadOptions(now=NOW)
    layout = fastpath.find_task_layout(str(path))
    assert layout is not None and layout.unit == "item" and layout.cut == cut
    report = IssueLog(source=str(path))
    with small_ranges(range_size), open(tmp_path / "out", "w+b") as out:
        count = ls_to_manifest_ranges(str(path), layout, options, report, out)
        out.seek(0)
        manifest, issues, unit = general_manifest(str(path), options)
        assert count == 50 and out.read() == manifest
    assert report.total == 10 and shown(report) == report_of(issues, unit, str(path))


def test_a_range_cut_inside_a_task_sends_the_file_to_the_streaming_reader(tmp_path: Path) -> None:
    """A cut of Label Studio's layout that falls inside a task (an object of a task's shape nested in
    its data, where a range happens to start) fails the range before it: no wrong manifest."""
    nested = [{"id": 1, "annotations": []}] + [{"id": 2, "annotations": [], "pad": "x" * 50}] * 40
    tasks = [as_exported(task(f"s3://bkt/{i}.jpg", choices("cat"), tid=i, history=nested)) for i in range(5)]
    path = tmp_path / "export.json"
    path.write_bytes(serialized(tasks, "array, one line, Label Studio's", False))
    layout = fastpath.find_task_layout(str(path))
    assert layout is not None and layout.cut == "task"
    ranges = fastpath.task_ranges(str(path), layout.start, layout.stop, 500)
    assert ranges is not None and len(ranges) > len(tasks)  # some start inside a task
    report = IssueLog(source=str(path))
    with small_ranges(500), open(tmp_path / "out", "w+b") as out:
        assert ls_to_manifest_ranges(str(path), layout, ReadOptions(now=NOW), report, out) is None
    with open(path, "rb") as stream, open(tmp_path / "cmd", "w+b") as out:
        count, _ = ls_to_manifest(str(path), stream, ReadOptions(now=NOW), out, rewrite=True)
        out.seek(0)
        assert count == 5 and out.read() == general_manifest(str(path), ReadOptions(now=NOW))[0]


def test_the_command_with_worker_processes_equals_the_streaming_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through ``main`` with a real pool: a file goes by the fast path, standard input by the stream."""
    tasks = [
        task(f"s3://bkt/{i % 40}.jpg", choices(f"l{i % 3}"), rect("box", 5, 5, 50, 50), tid=i)
        for i in range(120)
    ]
    src = tmp_path / "export.json"
    src.write_bytes(serialized(tasks, "array, one a line", False))
    monkeypatch.setattr(fastpath, "RANGE_BYTES", 2_000)
    monkeypatch.setenv("CUSTOMLABELS_WORKERS", "2")
    fast, streamed = tmp_path / "fast.manifest", tmp_path / "streamed.manifest"
    assert main(["convert", "ls-to-manifest", str(src), "-o", str(fast), "--job-name", "j"]) == 0
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(src.read_bytes()))))
    assert main(["convert", "ls-to-manifest", "-", "-o", str(streamed), "--job-name", "j"]) == 0
    fast_lines = [loads(x) for x in fast.read_bytes().splitlines()]
    streamed_lines = [loads(x) for x in streamed.read_bytes().splitlines()]
    for line in fast_lines + streamed_lines:  # the creation date is the time of the run
        for key in ("box-metadata", "label-metadata"):
            line.get(key, {}).pop("creation-date", None)
    assert len(fast_lines) == 40 and fast_lines == streamed_lines


# ----------------------------------------------------------------------------- manifest lines (validate)

manifest_lines = st.one_of(
    st.just(b""),
    st.just(b"{"),
    st.just(b"   "),
    st.sampled_from([b'{"source-ref": "s3://b/1.jpg"}', b'{"source-ref": "s3://b/1.jpg", "a": 0}']),
    st.builds(
        lambda ref, label: json.dumps(
            {
                "source-ref": f"s3://b/{ref}.jpg",
                "a": 0,
                "a-metadata": {
                    "class-name": label,
                    "type": "groundtruth/image-classification",
                    "human-annotated": "yes",
                    "creation-date": NOW,
                    "job-name": "j",
                    "confidence": 1,
                },
            },
            ensure_ascii=False,
        ).encode(),
        st.integers(0, 5),
        names,
    ),
    st.text(alphabet=st.sampled_from('aü猫{}" \r'), max_size=80).map(lambda t: t.encode("utf-8")),
)


@st.composite
def manifest_file(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(manifest_lines, max_size=25))
    breaks = [draw(st.sampled_from([b"\n", b"\r\n", b"\r\r\n"])) for _ in lines]
    body = b"".join(line + brk for line, brk in zip(lines, breaks, strict=True))
    return body[: -len(breaks[-1])] if lines and draw(st.booleans()) else body  # no final break


@settings(max_examples=200, deadline=None)
@given(data=manifest_file(), target=st.integers(1, 400), max_chars=st.sampled_from([12, 40, 90, 200_000]))
def test_range_lines_are_the_lines_of_the_whole_file(data: bytes, target: int, max_chars: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "in.manifest")
        Path(path).write_bytes(data)
        expected = [
            (r.number, r.data, r.too_long, r.length)
            for r in iter_lines(io.BytesIO(data), max_chars=max_chars)
        ]
        got: list[fastpath.Line] = []
        offset = 0
        for start, end in line_ranges(path, target) if data else []:
            lines = fastpath.range_lines(path, start, end, max_chars)
            got.extend((offset + number, *rest) for number, *rest in lines)
            offset += len(lines)
        assert got == expected


@settings(max_examples=150, deadline=None)
@given(data=manifest_file(), target=st.integers(1, 400), max_chars=st.sampled_from([40, 90, 200_000]))
def test_validates_range_checker_equals_the_general_checker(data: bytes, target: int, max_chars: int) -> None:
    limits = replace(codes.DEFAULT_LIMITS, max_line_chars=max_chars)
    try:
        with tempfile.TemporaryDirectory() as folder, small_ranges(target):
            path = os.path.join(folder, "in.manifest")
            Path(path).write_bytes(data)
            general = [
                check_line(raw, limits=limits) for raw in iter_lines(io.BytesIO(data), max_chars=max_chars)
            ]
            rows: list[tuple[Any, ...]] = []
            outputs: list[bytes] = []
            with open(path, "rb") as stream:
                work = fastpath.map_manifest_lines(
                    path, stream, check_lines, check_range, set_check_state, (limits, {})
                )
                for offset, chunk in work:
                    rows.extend((offset + number, *rest) for number, *rest in chunk.rows)
                    outputs.extend(chunk.blob.split(b"\n") if chunk.rows else [])
            assert rows == [(c.number, *c[2:]) for c in general]
            assert outputs == [c.output for c in general]
    finally:
        set_check_state(codes.DEFAULT_LIMITS, {})  # this process's checker, as the command leaves it


def test_range_lines_of_a_raw_line_too_long_in_bytes(tmp_path: Path) -> None:
    """A line over the limit in bytes (its break past what iter_lines reads) is too long either way."""
    data = b"x" * 100 + b"\n" + b'{"a": 1}\n'
    path = tmp_path / "in.manifest"
    path.write_bytes(data)
    assert fastpath.range_lines(str(path), 0, len(data), 10) == [
        (r.number, r.data, r.too_long, r.length) for r in iter_lines(io.BytesIO(data), max_chars=10)
    ]
    assert [r[2] for r in fastpath.range_lines(str(path), 0, len(data), 10)] == [True, False]
