"""Hostile manifest lines: ``check_line`` and ``customlabels validate`` answer with a code (or a clear
error), never a traceback, in bounded time and memory.

The command runs as a child process under ``RLIMIT_AS`` (address space) and a timeout, on a manifest of
lines meant to hurt: 100,000 characters and just over, a 20 MB line, nesting 100,000 deep (and just
past what the JSON writer handles), invalid UTF-8, duplicate keys, a class-map of thousands of entries,
NUL bytes, a byte-order mark, bare values.
"""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converters import codes
from converters.jsonio import RawLine, iter_lines
from converters.validation import MAX_DEPTH, check_line

CUSTOMLABELS = str(Path(sys.executable).with_name("customlabels"))
ADDRESS_SPACE = 768 * 1024 * 1024  # what the command may map, interpreter and libraries included
TIMEOUT = 120
LIMIT = codes.DEFAULT_LIMITS.max_line_chars
CLS = "groundtruth/image-classification"


def good(i: int) -> bytes:
    return orjson.dumps(
        {
            "source-ref": f"s3://bucket/images/{i}.jpg",
            "label": i % 2,
            "label-metadata": {
                "class-name": "ab"[i % 2],
                "confidence": 1,
                "type": CLS,
                "human-annotated": "yes",
                "creation-date": "2020-01-01T00:00:00",
            },
        }
    )


def padded(chars: int) -> bytes:
    """A valid line of exactly ``chars`` characters."""
    head = good(9999)[:-1] + b',"pad":"'
    return head + b"x" * (chars - len(head) - 2) + b'"}'


def nested(depth: int) -> bytes:
    """A line whose objects and arrays nest ``depth`` levels deep (the line itself counts as one)."""
    return good(7777)[:-1] + b',"deep":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def class_map(entries: int) -> bytes:
    line = json.loads(good(4242))
    line["label-metadata"]["class-map"] = {str(i): f"label-{i}" for i in range(entries)}
    return orjson.dumps(line)


HOSTILE: dict[str, bytes] = {
    "exactly the limit": padded(LIMIT),
    "one over the limit": padded(LIMIT + 1),
    "a 20 MB line": padded(20_000_000),
    "100,000 nested arrays": b"[" * 100_000 + b"]" * 100_000,
    "100,000 nested objects": b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
    "nested one past the writer": nested(MAX_DEPTH + 1),
    "nested as deep as the writer goes": nested(MAX_DEPTH),
    "nested past the reader": nested(1100),
    "invalid UTF-8": good(1)[:-2] + b'\xff\xfe"}',
    "a lone surrogate": good(2)[:-1] + b',"s":"\\ud800"}',
    "duplicate keys": b'{"source-ref":"s3://bucket/a.jpg","source-ref":"s3://bucket/b.jpg","label":0,'
    b'"label":"x","label-metadata":{"class-name":"a","type":"' + CLS.encode() + b'"}}',
    "a class-map of 4,000 entries": class_map(4000),
    "a class-map over the limit": class_map(20_000),
    "NUL bytes": b"\x00" * 1000,
    "a byte-order mark": b"\xef\xbb\xbf" + good(3),
    "a bare array": b"[]",
    "a bare number": b"1e999999",
    "null": b"null",
    "a carriage return alone": b"\r",
    "a label name of 100,000 characters": good(4).replace(
        b'"class-name":"b"', b'"class-name":"' + b"n" * 99_000 + b'"'
    ),
    "a source-ref with every control character": orjson.dumps(
        {"source-ref": "s3://bucket/" + "".join(map(chr, range(32))) + ".jpg"}
    ),
}


def _bounded(seconds: float, call: Callable[[], Any]) -> Any:
    started = time.monotonic()
    result = call()
    assert time.monotonic() - started < seconds
    return result


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_check_line_answers_every_hostile_line_with_a_code(name: str) -> None:
    stream = io.BytesIO(HOSTILE[name] + b"\n")
    lines = _bounded(10, lambda: list(iter_lines(stream, max_chars=LIMIT)))
    assert len(lines) == 1
    check = _bounded(10, lambda: check_line(lines[0]))
    result = orjson.loads(check.output)  # the validation manifest's line is JSON whatever came in
    found = [e["code"] for e in result.get("errors", [])]
    if check.has_error:
        assert found or any("errors" in v for v in result.values() if isinstance(v, dict))
    if len(HOSTILE[name]) > LIMIT:
        assert lines[0].too_long and found == [codes.ERROR_INVALID_JSON_LINE]


def test_nesting_the_writer_cannot_write_is_an_invalid_line() -> None:
    """Found by these tests: a line nested 255 to 1,024 levels parsed, and writing its validation line
    back raised ``TypeError: Recursion limit reached`` out of ``customlabels validate``."""
    too_deep = check_line(RawLine(1, nested(MAX_DEPTH + 1)))
    assert too_deep.has_error and too_deep.terminal
    assert orjson.loads(too_deep.output)["errors"][0]["code"] == codes.ERROR_INVALID_JSON_LINE
    assert not check_line(RawLine(1, nested(MAX_DEPTH))).has_error


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=40,
)
metadata = st.fixed_dictionaries(
    {},
    optional={
        "class-name": json_values,
        "class-map": st.dictionaries(st.text(max_size=5), json_values, max_size=5) | json_values,
        "type": st.sampled_from([CLS, "groundtruth/object-detection", "x"]) | json_values,
        "confidence": json_values,
        "human-annotated": st.sampled_from(["yes", "no"]) | json_values,
        "creation-date": st.text(max_size=30) | json_values,
        "job-name": json_values,
        "objects": st.lists(st.dictionaries(st.text(max_size=10), json_values, max_size=3), max_size=3),
    },
)
manifest_lines = st.fixed_dictionaries(
    {"source-ref": st.sampled_from(["s3://bucket/a.jpg", "s3://b/", "", "http://x/a.jpg"]) | json_values},
    optional={
        "label": json_values,
        "label-metadata": metadata | json_values,
        "bbox": st.fixed_dictionaries(
            {},
            optional={
                "annotations": st.lists(
                    st.dictionaries(st.text(max_size=8), json_values, max_size=6), max_size=4
                ),
                "image_size": st.lists(
                    st.dictionaries(st.text(max_size=8), json_values, max_size=4), max_size=2
                )
                | json_values,
            },
        )
        | json_values,
        "bbox-metadata": metadata | json_values,
    },
)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(line=st.one_of(manifest_lines.map(lambda obj: json.dumps(obj).encode()), st.binary(max_size=500)))
def test_fuzzed_lines_get_a_check_not_an_exception(line: bytes) -> None:
    check = check_line(RawLine(1, line))
    orjson.loads(check.output)


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def _validate(tmp_path: Path, manifest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CUSTOMLABELS, "validate", str(manifest), "--output-dir", str(tmp_path / "out")],
        preexec_fn=_limited,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_validate_a_hostile_manifest_under_a_memory_limit(tmp_path: Path) -> None:
    manifest = tmp_path / "hostile.manifest"
    with manifest.open("wb") as out:
        for i in range(40):
            out.write(good(i) + b"\n")
        for line in HOSTILE.values():
            out.write(line + b"\n")
    done = _validate(tmp_path, manifest)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "manifest_summary.json").read_text())
    training = summary["statistics"]["training"]
    assert training["total_json_lines"] == 40 + len(HOSTILE)
    assert training["invalid_json_lines"] >= 12
    written = (tmp_path / "out" / "training_manifest_with_validation.json").read_bytes().splitlines()
    for line in written:
        orjson.loads(line)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("one 60 MB line without a line break", b"x" * 60_000_000),
        ("random bytes", bytes(range(256)) * 4000),
        ("NUL bytes only", b"\x00" * 1_000_000),
    ],
)
def test_validate_a_file_that_is_no_manifest(tmp_path: Path, name: str, content: bytes) -> None:
    manifest = tmp_path / "junk.manifest"
    manifest.write_bytes(content)
    done = _validate(tmp_path, manifest)
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
