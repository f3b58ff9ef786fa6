"""``customlabels convert ...``: the contract other tools call, bad input, whole-or-nothing output,
``--json``."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

import pytest

from converters import codes
from plugin.cli import main
from tests.builders import choices, cls_attr, coco, coco_box, coco_image, det_attr, jsonl, line, task
from tests.plugin.cli.helpers import SAMPLES, parsed, read_lines, run, write_json, write_lines


def test_json_lines_and_stdin_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = [
        task("s3://b/cam1/frame_0001.jpg", choices("a")),
        task("s3://b/cam2/frame_0001.jpg", choices("b"), tid=2),
    ]
    src = write_lines(tmp_path / "tasks.jsonl", tasks)
    out = tmp_path / "m.manifest"
    assert main(["convert", "ls-to-manifest", src, "-o", str(out)]) == 0
    refs = [x["source-ref"] for x in read_lines(out)]
    assert refs == ["s3://b/cam1/frame_0001.jpg", "s3://b/cam2/frame_0001.jpg"]
    fake_stdin = io.TextIOWrapper(io.BufferedReader(io.BytesIO(json.dumps(tasks).encode())))
    monkeypatch.setattr(sys, "stdin", fake_stdin)
    out2 = tmp_path / "m2.manifest"
    assert main(["convert", "ls-to-manifest", "-", "-o", str(out2)]) == 0
    assert out2.read_text() == out.read_text()


def test_s3_prefix_maps_uploaded_images(tmp_path: Path) -> None:
    src = write_json(tmp_path / "t.json", [task("/data/upload/1/abc-cat.jpg", choices("a"))])
    out = tmp_path / "m.manifest"
    assert main(["convert", "ls-to-manifest", src, "-o", str(out), "--s3-prefix", "s3://bkt/imports/"]) == 0
    assert read_lines(out)[0]["source-ref"] == "s3://bkt/imports/data/upload/1/abc-cat.jpg"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('[{"data": {"image": "s3://b/a.jpg"}}, {"data": ', "item 1"),
        ('{"data": {"image": "s3://b/a.jpg"}}\n{"data": oops}\n', "line 2"),
        ('{\n  "data": {"image": "s3://b/a.jpg"}\n}\n', "pretty-printed"),
        ('[{"data": {"text": "no image"}}]', "item 1, field 'data.image'"),
        ('[{"data": {"image": "https://example.invalid/x.jpg"}}]', "--s3-prefix"),
        (
            json.dumps([task("s3://b/a.jpg", {"type": "polygonlabels", "from_name": "p", "value": {}})]),
            "annotations[0].result[0].type",
        ),
    ],
)
def test_bad_input_names_the_place_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, expected: str
) -> None:
    src = tmp_path / "in.json"
    src.write_text(content)
    out = tmp_path / "out.manifest"
    out.write_text("old contents\n")
    assert main(["convert", "ls-to-manifest", str(src), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert expected in err and str(src) in err
    assert out.read_text() == "old contents\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.json", "out.manifest"]


def test_a_manifest_line_over_the_limit_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_lines(tmp_path / "tasks.jsonl", [task("s3://b/a.jpg", choices("x" * 200_000))])
    out = tmp_path / "m.manifest"
    assert main(["convert", "ls-to-manifest", src, "-o", str(out)]) == 1
    assert "line 1" in capsys.readouterr().err
    assert not out.exists()


def test_manifest_to_ls_writes_tasks_and_a_config_covering_every_label(tmp_path: Path) -> None:
    lines = [
        line(
            "s3://b/1.jpg",
            cls_attr("a", "kitchen"),
            cls_attr("b", "indoor"),
            det_attr("bb", [("toaster", 1, 1, 90, 90)]),
        ),
        line("s3://b/2.jpg", cls_attr("a", "garden", human="no")),
    ]
    src = write_lines(tmp_path / "in.manifest", lines)
    out, config = tmp_path / "tasks.json", tmp_path / "config.xml"
    assert (
        main(
            [
                "convert",
                "manifest-to-ls",
                src,
                "-o",
                str(out),
                "--label-config-out",
                str(config),
                "--dataset",
                "train",
            ]
        )
        == 0
    )
    tasks = json.loads(out.read_text())
    assert tasks[0]["data"]["dataset"] == "train"
    assert "annotations" in tasks[0] and "predictions" in tasks[1]
    xml = config.read_text()
    for label in ("kitchen", "indoor", "garden", "toaster"):
        assert f'value="{label}"' in xml
    assert 'choice="multiple"' in xml
    back = tmp_path / "back.manifest"
    assert main(["convert", "ls-to-manifest", str(out), "-o", str(back), "--label-config", str(config)]) == 0
    assert read_lines(back) == lines


def test_manifest_to_ls_reports_bad_lines_with_codes_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.manifest"
    src.write_text(
        json.dumps(line("s3://b/1.jpg", cls_attr("a", "x")))
        + "\n"
        + '{"source-ref": "https://x/y.jpg"}\n'
        + "{\n"
        + "z" * 200_000
        + "\n"
    )
    out = tmp_path / "tasks.json"
    assert main(["convert", "manifest-to-ls", str(src), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "line 2, field 'source-ref'" in err and "ERROR_INVALID_SOURCE_REF_FORMAT" in err
    assert "line 3" in err and "pretty-printed" in err
    assert "line 4" in err and "200,000 characters" in err
    assert not out.exists()
    assert main(["convert", "manifest-to-ls", str(src), "-o", str(out), "--skip-invalid"]) == 0
    assert len(json.loads(out.read_text())) == 1


def test_manifest_to_ls_in_worker_pieces_equals_one_stream_and_leaves_no_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small ranges and two workers: each worker writes its tasks to a part file the parent copies in.
    from plugin.cli import fastpath  # noqa: PLC0415

    monkeypatch.setattr(fastpath, "RANGE_BYTES", 2_000)
    monkeypatch.setenv("CUSTOMLABELS_WORKERS", "2")
    lines = [
        line(f"s3://b/{i}.jpg", cls_attr("a", f"l{i % 7}"), det_attr("bb", [("box", i, 1, 9, 9)]))
        for i in range(300)
    ]
    src = write_lines(tmp_path / "in.manifest", lines)
    for name in ("tasks.json", "tasks.jsonl"):
        pieces, streamed = tmp_path / "out" / name, tmp_path / f"streamed-{name}"
        pieces.parent.mkdir(exist_ok=True)
        assert main(["convert", "manifest-to-ls", src, "-o", str(pieces)]) == 0
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(Path(src).read_bytes())))
        assert main(["convert", "manifest-to-ls", "-", "-o", str(streamed)]) == 0
        assert pieces.read_bytes() == streamed.read_bytes()
        assert sorted(p.name for p in pieces.parent.iterdir()) == sorted(
            n for n in ("tasks.json", "tasks.jsonl") if (pieces.parent / n).exists()
        )
    assert len(json.loads((tmp_path / "out" / "tasks.json").read_text())) == 300


def test_ls_to_manifest_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_path = tmp_path / "out.manifest"
    code, out, err = run(
        capsys,
        "convert",
        "ls-to-manifest",
        str(SAMPLES / "tasks.json"),
        "-o",
        str(out_path),
        "--label-config",
        str(SAMPLES / "label_config.xml"),
        "--image-meta",
        str(SAMPLES / "image_meta.jsonl"),
        "--json",
    )
    assert code == 0
    doc = parsed(out)
    assert doc["output"] == str(out_path) and doc["input"] == str(SAMPLES / "tasks.json")
    assert doc["count"] == len(out_path.read_text().splitlines()) == 4
    assert doc["warnings"] == 3
    assert [i["code"] for i in doc["issues"]] == [
        "WARNING_IGNORED_RESULT",
        "WARNING_ROTATED_BOX",
        "WARNING_BOX_CLIPPED",
    ]
    assert doc["issues"][1] == {
        "item": 2,
        "code": "WARNING_ROTATED_BOX",
        "severity": "warning",
        "field": "annotations[0].result[1].value.rotation",
        "message": doc["issues"][1]["message"],
    }
    assert "WARNING_ROTATED_BOX" in err  # the warnings are still said on stderr
    assert "wrote 4 manifest lines" not in err  # the JSON says it


def test_ls_to_manifest_without_json_is_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys,
        "convert",
        "ls-to-manifest",
        str(SAMPLES / "tasks.json"),
        "-o",
        str(tmp_path / "o.manifest"),
        "--label-config",
        str(SAMPLES / "label_config.xml"),
    )
    assert code == 0
    assert out == ""
    assert err.rstrip().endswith(f"wrote 4 manifest lines to {tmp_path / 'o.manifest'}")


def test_manifest_to_ls_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "in.manifest"
    manifest.write_text(
        jsonl(
            line("s3://b/1.jpg", cls_attr("label", "cat")),
            line("s3://b/2.jpg", det_attr("bb", [("dog", 10, 10, 50, 50)])),
            "{broken",
        )
    )
    config = tmp_path / "config.xml"
    code, out, _ = run(
        capsys,
        "convert",
        "manifest-to-ls",
        str(manifest),
        "-o",
        str(tmp_path / "tasks.json"),
        "--label-config-out",
        str(config),
        "--skip-invalid",
        "--json",
    )
    assert code == 0
    doc = parsed(out)
    assert doc["count"] == len(json.loads((tmp_path / "tasks.json").read_text())) == 2
    assert doc["skipped_invalid"] == 1
    assert doc["issues"][0]["line"] == 3 and doc["issues"][0]["code"] == codes.ERROR_INVALID_JSON_LINE
    assert doc["labels"] == {"choices": ["cat"], "boxes": ["dog"]}
    assert doc["label_config"] == str(config) and config.exists()


def test_coco_and_csv_to_manifest_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    coco_path = tmp_path / "coco.json"
    coco_path.write_text(
        json.dumps(
            coco(
                [coco_image(1, "a.jpg"), coco_image(2, "b.jpg")],
                [coco_box(1, 1, 7, [10, 10, 20, 20]), coco_box(2, 2, 7, [5, 5, 10, 10])],
                {7: "bolt"},
            )
        )
    )
    code, out, _ = run(
        capsys,
        "convert",
        "coco-to-manifest",
        str(coco_path),
        "--s3-prefix",
        "s3://b/imgs/",
        "-o",
        str(tmp_path / "coco.manifest"),
        "--json",
    )
    assert code == 0
    doc = parsed(out)
    assert (doc["count"], doc["warnings"], doc["output"]) == (2, 0, str(tmp_path / "coco.manifest"))

    csv_path = tmp_path / "labels.csv"
    with csv_path.open("w", newline="") as f:
        csv.writer(f).writerows([["s3://b/1.jpg", "cat"], ["s3://b/2.jpg", "dog"], ["s3://b/3.jpg", "cat"]])
    code, out, _ = run(
        capsys, "convert", "csv-to-manifest", str(csv_path), "-o", str(tmp_path / "csv.manifest"), "--json"
    )
    assert code == 0
    assert parsed(out)["count"] == 3
