"""Bad input on every command: a message naming the file, line and field; exit code 1 (2 for usage);
and no half-written output: what was there before is still there, and no temporary file is left."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from converters import codes
from plugin.cli import main
from tests.builders import choices, cls_attr, coco, coco_box, coco_image, jsonl, line, task

OLD = "old contents\n"


BIG = "x" * 200_000


def good_line(n: int = 1, label: str = "cat") -> dict[str, Any]:
    return line(f"s3://bucket/{n}.jpg", cls_attr("label", label))


def unsupported_line() -> dict[str, Any]:
    meta = cls_attr("check", "cat")["check-metadata"] | {"type": "groundtruth/label-verification"}
    return {"source-ref": "s3://bucket/1.jpg", "check": 0, "check-metadata": meta}


@dataclass(frozen=True)
class Case:
    """``argv`` with ``{in}`` for the input and ``{out}``/``{out2}`` for outputs that exist beforehand."""

    argv: list[str]
    name: str
    content: str | bytes
    expected: list[str]


LS = ["convert", "ls-to-manifest", "{in}", "-o", "{out}"]


TO_LS = ["convert", "manifest-to-ls", "{in}", "-o", "{out}", "--label-config-out", "{out2}"]


SPLIT = ["split", "{in}", "--train-out", "{out}", "--test-out", "{out2}"]


CSV = ["convert", "csv-to-manifest", "{in}", "-o", "{out}"]


COCO = ["convert", "coco-to-manifest", "{in}", "--s3-prefix", "s3://bucket/coco/", "-o", "{out}"]


POLYGON = {
    "id": "p",
    "from_name": "poly",
    "to_name": "image",
    "type": "polygonlabels",
    "value": {"points": []},
}


COCO_DOC = coco([coco_image(1, "a.jpg")], [coco_box(1, 1, 0, [1, 2, 30, 40])], {0: "cat"})


CASES = {
    # Label Studio tasks -> manifest
    "ls broken JSON line": Case(
        LS, "tasks.jsonl", jsonl(task("s3://b/a.jpg"), '{"data": {"image": '), [":line 2", "broken JSON"]
    ),
    "ls broken JSON array": Case(
        LS, "tasks.json", '[{"data": {"image": "s3://b/a.jpg"}}, {"data": ', [":item 2", "broken JSON"]
    ),
    "ls pretty-printed": Case(
        LS,
        "tasks.jsonl",
        json.dumps(task("s3://b/a.jpg", choices("cat")), indent=2),
        [":line 1", "pretty-printed"],
    ),
    "ls task without image": Case(
        LS,
        "tasks.jsonl",
        jsonl(task("s3://b/a.jpg", choices("cat")), {"id": 2, "data": {"text": "hello"}}),
        [":line 2, field 'data.image'", "no image URL"],
    ),
    "ls unknown result type": Case(
        LS,
        "tasks.json",
        json.dumps(
            [task("s3://b/a.jpg", choices("cat")), task("s3://b/b.jpg", choices("a"), POLYGON, tid=2)]
        ),
        [":item 2, field 'annotations[0].result[1].type'", "'polygonlabels'"],
    ),
    "ls image not on S3": Case(
        LS,
        "tasks.jsonl",
        jsonl(task("https://example.com/a.jpg", choices("cat"))),
        [":line 1, field 'data.image'", "--s3-prefix"],
    ),
    "ls 200 kB manifest line": Case(
        LS,
        "tasks.jsonl",
        jsonl(task("s3://b/a.jpg", choices("cat")), task("s3://b/b.jpg", choices(BIG))),
        [":line 2", "100,000"],
    ),
    # manifest -> Label Studio tasks
    "to-ls broken JSON": Case(
        TO_LS,
        "in.manifest",
        jsonl(good_line(), '{"source-ref": "s3://bucket/2.jpg", '),
        [":line 2", "broken JSON", codes.ERROR_INVALID_JSON_LINE],
    ),
    "to-ls pretty-printed": Case(
        TO_LS, "in.manifest", json.dumps(good_line(), indent=2), [":line 1", "pretty-printed"]
    ),
    "to-ls line without image": Case(
        TO_LS,
        "in.manifest",
        jsonl(good_line(), {"image": "s3://bucket/2.jpg", **cls_attr("label", "dog")}),
        [":line 2, field 'source-ref'", codes.ERROR_MISSING_SOURCE_REF],
    ),
    "to-ls unknown type": Case(
        TO_LS,
        "in.manifest",
        jsonl(unsupported_line()),
        [":line 1, field 'check-metadata.type'", codes.ERROR_UNSUPPORTED_USE_CASE_TYPE],
    ),
    "to-ls image not on S3": Case(
        TO_LS,
        "in.manifest",
        jsonl(line("https://bucket.s3.amazonaws.com/1.jpg", cls_attr("label", "cat"))),
        [":line 1, field 'source-ref'", codes.ERROR_INVALID_SOURCE_REF_FORMAT],
    ),
    "to-ls 200 kB line": Case(
        TO_LS,
        "in.manifest",
        jsonl(good_line(), good_line(2) | {"note": BIG}),
        [":line 2", "characters", "100,000"],
    ),
    # split
    "split broken JSON": Case(SPLIT, "in.manifest", jsonl(good_line(), "{oops"), [":line 2", "broken JSON"]),
    "split pretty-printed": Case(
        SPLIT, "in.manifest", json.dumps(good_line(), indent=2), [":line 1", ":line 2"]
    ),
    "split line without image": Case(
        SPLIT,
        "in.manifest",
        jsonl(good_line(), {"image": "s3://bucket/2.jpg"}),
        [":line 2, field 'source-ref'", codes.ERROR_MISSING_SOURCE_REF],
    ),
    "split unknown type": Case(
        SPLIT, "in.manifest", jsonl(unsupported_line()), [":line 1, field 'check-metadata.type'"]
    ),
    "split image not on S3": Case(
        SPLIT,
        "in.manifest",
        jsonl(good_line(), {"source-ref": "/data/upload/2.jpg"}),
        [":line 2, field 'source-ref'", codes.ERROR_INVALID_SOURCE_REF_FORMAT],
    ),
    "split 200 kB line": Case(
        SPLIT, "in.manifest", jsonl(good_line(), good_line(2) | {"note": BIG}), [":line 2"]
    ),
    # CSV -> manifest
    "csv image not on S3": Case(
        CSV, "labels.csv", "s3://b/a.jpg,cat\nlocal/b.jpg,dog\n", [":line 2, field 'image'", "--s3-prefix"]
    ),
    "csv no image": Case(CSV, "labels.csv", "s3://b/a.jpg,cat\n,dog\n", [":line 2, field 'image'", "empty"]),
    "csv 200 kB cell": Case(
        CSV, "labels.csv", f"s3://b/a.jpg,cat\ns3://b/b.jpg,{BIG}\n", [":line 2", "broken CSV"]
    ),
    "csv not UTF-8": Case(CSV, "labels.csv", b"s3://b/a.jpg,caf\xe9\n", ["not UTF-8"]),
    # COCO -> manifest
    "coco broken JSON": Case(
        COCO, "coco.json", '{\n  "images": [\n    {"id": 1,,}\n', ["broken JSON", "line 3"]
    ),
    "coco box": Case(
        COCO,
        "coco.json",
        json.dumps(COCO_DOC | {"annotations": [coco_box(1, 1, 0, [1, 2, 30])]}),
        ["field 'annotations[0].bbox'"],
    ),
    "coco no image file": Case(
        COCO,
        "coco.json",
        json.dumps(COCO_DOC | {"images": [{"id": 1, "width": 640, "height": 480}]}),
        ["field 'images[0].file_name'"],
    ),
    "coco unknown category": Case(
        COCO,
        "coco.json",
        json.dumps(COCO_DOC | {"annotations": [coco_box(1, 1, 5, [1, 2, 30, 40])]}),
        ["field 'annotations[0].category_id'", "category 5"],
    ),
    "coco is a Label Studio export": Case(
        COCO, "coco.json", json.dumps([task("s3://b/a.jpg")]), ["a COCO file is a JSON object"]
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_named_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    case = CASES[name]
    src = tmp_path / case.name
    if isinstance(case.content, bytes):
        src.write_bytes(case.content)
    else:
        src.write_text(case.content)
    outputs = {"{out}": tmp_path / "out.file", "{out2}": tmp_path / "out2.file"}
    for path in outputs.values():
        path.write_text(OLD)
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = [str(src) if a == "{in}" else str(outputs.get(a, a)) for a in case.argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert str(src) in err
    for fragment in case.expected:
        assert fragment in err, (fragment, err)
    assert all(path.read_text() == OLD for path in outputs.values())
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_missing_output_folder_is_named_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "tasks.jsonl"
    src.write_text(jsonl(task("s3://b/a.jpg", choices("cat"))))
    assert main(["convert", "ls-to-manifest", str(src), "-o", str(tmp_path / "no" / "m.manifest")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks.jsonl"]


def test_a_missing_input_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.jsonl"
    assert main(["convert", "ls-to-manifest", str(missing), "-o", str(tmp_path / "m.manifest")]) == 1
    assert f"{missing}: cannot read" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_long_task_line_is_fine_when_its_manifest_line_is_short(tmp_path: Path) -> None:
    # Label Studio tasks have no line limit; only manifest lines have Rekognition's 100,000.
    src = tmp_path / "tasks.jsonl"
    src.write_text(jsonl(task("s3://b/a.jpg", choices("cat"), note=BIG)))
    out = tmp_path / "m.manifest"
    assert main(["convert", "ls-to-manifest", str(src), "-o", str(out)]) == 0
    (written,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert written["source-ref"] == "s3://b/a.jpg" and len(out.read_text()) < 1000


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        ('{"source-ref": "s3://bucket/9.jpg", ', codes.ERROR_INVALID_JSON_LINE),
        ("{", codes.ERROR_INVALID_JSON_LINE),  # the first line of a pretty-printed object
        ({"image": "s3://bucket/9.jpg", **cls_attr("label", "cat")}, codes.ERROR_MISSING_SOURCE_REF),
        (unsupported_line() | {"source-ref": "s3://bucket/9.jpg"}, codes.ERROR_UNSUPPORTED_USE_CASE_TYPE),
        (
            line("https://bucket.s3.amazonaws.com/9.jpg", cls_attr("label", "cat")),
            codes.ERROR_INVALID_SOURCE_REF_FORMAT,
        ),
        (good_line(9) | {"note": BIG}, codes.ERROR_INVALID_JSON_LINE),
    ],
)
def test_validate_reports_the_bad_line_and_exits_one_when_too_many_are_bad(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: Any, code: str
) -> None:
    train, test, out = tmp_path / "train.manifest", tmp_path / "test.manifest", tmp_path / "out"
    test.write_text(jsonl(good_line(20, "cat"), good_line(21, "dog")))
    good = [good_line(1, "cat"), good_line(2, "dog"), good_line(3, "cat")]
    # One bad line in five is within Rekognition's 20%; one in four is not.
    for lines, exit_code, number in (([*good, good_line(4, "dog"), bad], 0, 5), ([*good, bad], 1, 4)):
        train.write_text(jsonl(*lines))
        assert main(["validate", str(train), "--test", str(test), "--output-dir", str(out)]) == exit_code
        stdout = capsys.readouterr().out
        assert f"lines with errors: {number}" in stdout
        written = (out / "training_manifest_with_validation.json").read_text().splitlines()
        assert code in {e["code"] for e in json.loads(written[number - 1])["errors"]}
        summary = json.loads((out / "manifest_summary.json").read_text())
        assert summary["statistics"]["training"]["error_json_line_indices"] == [number]


@pytest.mark.parametrize(
    "argv",
    [
        ["validate"],
        ["validate", "t.manifest", "--seed", "x"],
        ["convert", "ls-to-manifest", "in.json"],
        ["convert", "manifest-to-ls", "in.manifest", "--dataset", "validation", "-o", "x"],
        ["convert", "coco-to-manifest", "coco.json", "-o", "m.manifest"],
        ["convert", "csv-to-manifest"],
        ["split", "in.manifest", "--train-out", "a"],
        ["split", "in.manifest", "--train-out", "a", "--test-out", "b", "--test-fraction", "a fifth"],
    ],
)
def test_usage_errors_exit_with_two(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "error:" in err


def test_csv_duplicates_write_the_two_csvs_and_no_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "labels.csv"
    src.write_text("s3://b/a.jpg,cat,|with, comma|\ns3://b/b.jpg,dog\n\ns3://b/a.jpg,owl\n")
    out = tmp_path / "labels.manifest"
    assert main(["convert", "csv-to-manifest", str(src), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "1 duplicate image(s) (lines 4)" in err and "no manifest was made" in err
    assert not out.exists()
    dedup, dups = tmp_path / "labels-deduplicated.csv", tmp_path / "labels-duplicates.csv"
    assert dups.read_text() == "s3://b/a.jpg,owl\n"
    # The deduplicated file is the next input, and reads as the first occurrences did.
    assert main(["convert", "csv-to-manifest", str(dedup), "-o", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["source-ref"] for x in lines] == ["s3://b/a.jpg", "s3://b/b.jpg"]
    assert [k for k in lines[0] if not k.endswith("-metadata")] == ["source-ref", "cat", "with, comma"]


def test_coco_duplicates_keep_the_first_image_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = coco(
        [coco_image(1, "a.jpg"), coco_image(2, "b.jpg"), coco_image(3, "a.jpg")],
        [coco_box(1, 1, 0, [1, 2, 30, 40]), coco_box(2, 3, 0, [5, 5, 5, 5])],
        {0: "cat"},
    )
    src, out = tmp_path / "coco.json", tmp_path / "m.manifest"
    src.write_text(json.dumps(doc))
    assert main(["convert", "coco-to-manifest", str(src), "--s3-prefix", "s3://bucket/", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{src}:item 3, field 'images[2]'" in err and codes.DUPLICATE_SOURCE_REF in err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["source-ref"] for x in lines] == ["s3://bucket/a.jpg", "s3://bucket/b.jpg"]
    assert lines[0]["bounding-box"]["annotations"] == [
        {"class_id": 0, "top": 2, "left": 1, "width": 30, "height": 40}
    ]


def test_label_studio_duplicates_keep_the_first_task_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "tasks.json", tmp_path / "m.manifest"
    tasks = [task("s3://b/a.jpg", choices("cat")), task("s3://b/b.jpg", choices("dog"), tid=2)]
    tasks.append(task("s3://b/a.jpg", choices("owl"), tid=3))
    src.write_text(json.dumps(tasks))
    assert main(["convert", "ls-to-manifest", str(src), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{src}:item 3, field 'data.image'" in err and codes.DUPLICATE_SOURCE_REF in err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["label-metadata"]["class-name"] for x in lines] == ["cat", "dog"]
