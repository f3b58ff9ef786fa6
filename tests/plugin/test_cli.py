"""The ``customlabels`` command line: the contract other tools call, bad input, whole-or-nothing output."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from plugin.cli import main
from tests.builders import choices, cls_attr, det_attr, line, task

SAMPLES = Path(__file__).resolve().parents[2] / "plugin" / "samples"


def write_json(path: Path, obj: Any) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def write_lines(path: Path, objs: list[Any]) -> str:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return str(path)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_bare_command_and_every_subcommand_print_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "convert" in capsys.readouterr().out
    for argv in (
        ["convert", "ls-to-manifest"],
        ["convert", "manifest-to-ls"],
        ["convert", "coco-to-manifest"],
        ["convert", "csv-to-manifest"],
        ["validate"],
        ["split"],
    ):
        with pytest.raises(SystemExit) as done:
            main([*argv, "--help"])
        assert done.value.code == 0
    with pytest.raises(SystemExit) as usage:
        main(["split"])
    assert usage.value.code == 2


def test_installed_console_script_runs_the_bundled_sample(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "customlabels"
    out = tmp_path / "out.manifest"
    done = subprocess.run(
        [
            str(exe),
            "convert",
            "ls-to-manifest",
            str(SAMPLES / "tasks.json"),
            "-o",
            str(out),
            "--label-config",
            str(SAMPLES / "label_config.xml"),
            "--image-meta",
            str(SAMPLES / "image_meta.jsonl"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = read_lines(out)
    assert [x["source-ref"].rsplit("/", 1)[1] for x in lines] == [
        "cat_001.jpg",
        "dog_001.jpg",
        "portrait_001.jpg",
        "dog_002.jpg",
    ]
    portrait = lines[2]["bounding-box"]
    assert portrait["image_size"] == [{"width": 320, "height": 240, "depth": 3}]
    assert portrait["annotations"] == [{"class_id": 0, "top": 60, "left": 32, "width": 80, "height": 120}]
    assert lines[3] == {"source-ref": "s3://demo-bucket/pets/outdoor/dog_002.jpg"}
    assert "WARNING_ROTATED_BOX" in done.stderr


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
    from plugin import cli  # noqa: PLC0415

    monkeypatch.setattr(cli, "_RANGE_BYTES", 2_000)
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


def test_split_command_keeps_an_earlier_split(tmp_path: Path) -> None:
    labels = ["cat"] * 10 + ["dog"] * 10
    lines = [line(f"s3://b/{i}.jpg", cls_attr("a", name)) for i, name in enumerate(labels)]
    src = write_lines(tmp_path / "all.manifest", lines)
    tr, te = tmp_path / "train.manifest", tmp_path / "test.manifest"
    args = ["split", src, "--train-out", str(tr), "--test-out", str(te), "--seed", "3"]
    assert main(args) == 0
    first_train, first_test = tr.read_text(), te.read_text()
    assert main(args) == 0
    assert (tr.read_text(), te.read_text()) == (first_train, first_test)
    assert len(read_lines(te)) == 4
    old_tr, old_te = tmp_path / "old_train.manifest", tmp_path / "old_test.manifest"
    tr.rename(old_tr)
    te.rename(old_te)
    more = lines + [line(f"s3://b/new{i}.jpg", cls_attr("a", "cat")) for i in range(5)]
    src2 = write_lines(tmp_path / "more.manifest", more)
    assert (
        main(
            [
                "split",
                src2,
                "--train-out",
                str(tr),
                "--test-out",
                str(te),
                "--keep-train",
                str(old_tr),
                "--keep-test",
                str(old_te),
            ]
        )
        == 0
    )
    new_test = {x["source-ref"] for x in read_lines(te)}
    assert {x["source-ref"] for x in read_lines(old_te)} <= new_test
    assert not {x["source-ref"] for x in read_lines(old_tr)} & new_test
    cats = sum(1 for x in read_lines(te) if x["a-metadata"]["class-name"] == "cat")
    assert abs(cats - 15 * 0.2) <= 1


def test_split_warns_with_rekognitions_distribute_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_lines(
        tmp_path / "all.manifest", [line("s3://b/1.jpg", cls_attr("a", "lonely")), line("s3://b/2.jpg")]
    )
    assert main(["split", src, "--train-out", str(tmp_path / "a"), "--test-out", str(tmp_path / "b")]) == 0
    assert "ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE" in capsys.readouterr().err
