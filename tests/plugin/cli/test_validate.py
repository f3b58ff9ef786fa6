"""``customlabels validate``: the image rules through ``--image-meta``, the codes only the command line can
see (files that cannot be read, are empty or too large), exit codes, and what is written where."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from converters import codes
from plugin.cli import main
from tests.builders import cls_attr, det_attr, jsonl, line
from tests.converters.test_validation import CLI_ONLY_CODES
from tests.plugin.cli.helpers import parsed, run

GOOD_META = {"width": 640, "height": 480, "orientation": 1, "format": "jpeg", "bytes": 120_000}


def ref(n: int) -> str:
    return f"s3://bucket/images/img{n}.jpg"


def train_lines(count: int = 10) -> list[dict[str, Any]]:
    """``count`` images, labels a and b taking turns."""
    return [line(ref(i), cls_attr("label", "ab"[i % 2])) for i in range(count)]


def held_out_lines() -> list[dict[str, Any]]:
    return [line(ref(100 + i), cls_attr("label", "ab"[i % 2])) for i in range(4)]


def meta_lines(lines: list[dict[str, Any]], **changes: dict[str, Any]) -> str:
    """An ``--image-meta`` file with good facts for every image; ``changes`` maps a source-ref to others."""
    out = []
    for obj in lines:
        facts = {"source-ref": obj["source-ref"], **GOOD_META}
        facts.update(changes.get(obj["source-ref"], {}))
        out.append(facts)
    return jsonl(*out)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "train.manifest").write_text(jsonl(*train_lines()))
    (tmp_path / "test.manifest").write_text(jsonl(*held_out_lines()))
    return tmp_path


def run_validate(
    workdir: Path, *extra: str, train: str = "train.manifest", test: str | None = "test.manifest"
) -> int:
    argv = ["validate", str(workdir / train), "--output-dir", str(workdir / "out"), *extra]
    if test is not None:
        argv += ["--test", str(workdir / test)]
    return main(argv)


def summary(workdir: Path) -> Any:
    return json.loads((workdir / "out" / "manifest_summary.json").read_text())


def validated(workdir: Path, name: str = "training") -> list[dict[str, Any]]:
    text = (workdir / "out" / f"{name}_manifest_with_validation.json").read_text()
    return [json.loads(x) for x in text.splitlines()]


def line_codes(obj: dict[str, Any]) -> list[str]:
    return [e["code"] for e in obj.get("errors", [])]


@pytest.mark.parametrize(
    ("facts", "boxes", "code"),
    [
        ({"format": "gif"}, False, codes.ERROR_INVALID_IMAGE),
        ({"format": "webp"}, True, codes.ERROR_INVALID_IMAGE),
        ({"bytes": 0}, False, codes.ERROR_INVALID_IMAGE),  # an empty object: the upload failed
        ({"bytes": 15 * 1024 * 1024 + 1}, False, codes.ERROR_INVALID_IMAGE),
        ({"width": 63}, False, codes.ERROR_INVALID_IMAGE),
        ({"width": 2100, "height": 100}, False, codes.ERROR_INVALID_IMAGE),  # 21:1
        ({"width": 63}, True, codes.ERROR_INVALID_IMAGE_DIMENSION),
        ({"height": 4097}, True, codes.ERROR_INVALID_IMAGE_DIMENSION),
    ],
)
def test_image_meta_applies_rekognitions_image_rules(
    workdir: Path, capsys: pytest.CaptureFixture[str], facts: dict[str, Any], boxes: bool, code: str
) -> None:
    lines = train_lines()
    if boxes:
        lines[2] = line(ref(2), det_attr("bb", [("a", 10, 10, 50, 50)]))
    (workdir / "train.manifest").write_text(jsonl(*lines))
    meta = workdir / "meta.jsonl"
    meta.write_text(meta_lines(lines + held_out_lines(), **{ref(2): facts}))
    # One bad image of ten is within the 20% Rekognition tolerates: still usable.
    assert run_validate(workdir, "--image-meta", str(meta)) == 0
    out = validated(workdir)
    assert line_codes(out[2]) == [code]
    assert out[2]["errors"][0]["message"] == codes.message(code)
    assert all("errors" not in o for i, o in enumerate(out) if i != 2)
    training = summary(workdir)["statistics"]["training"]
    assert (training["invalid_json_lines"], training["error_json_line_indices"]) == (1, [3])
    assert "lines with errors: 3" in capsys.readouterr().out


def test_too_many_bad_images_make_the_dataset_unusable(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = workdir / "meta.jsonl"
    bad = {ref(i): {"format": "gif"} for i in (1, 4, 7)}
    meta.write_text(meta_lines(train_lines() + held_out_lines(), **bad))
    assert run_validate(workdir, "--image-meta", str(meta)) == 1
    assert [line_codes(o) for o in validated(workdir)].count([codes.ERROR_INVALID_IMAGE]) == 3
    assert summary(workdir)["statistics"]["training"]["errors"] == [
        {
            "code": codes.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST,
            "message": codes.message(codes.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST),
        }
    ]
    assert "NOT usable" in capsys.readouterr().out


def test_a_broken_image_meta_file_names_line_and_field_and_writes_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = workdir / "meta.jsonl"
    meta.write_text(
        jsonl({"source-ref": ref(0), **GOOD_META}, {"source-ref": ref(1), **GOOD_META, "width": "wide"})
    )
    assert run_validate(workdir, "--image-meta", str(meta)) == 1
    err = capsys.readouterr().err
    assert f"{meta}:line 2, field 'width'" in err
    assert not (workdir / "out").exists()


def missing_train(workdir: Path) -> int:
    return run_validate(workdir, train="nowhere.manifest")


def missing_test(workdir: Path) -> int:
    return run_validate(workdir, test="nowhere.manifest")


def empty_train(workdir: Path) -> int:
    (workdir / "train.manifest").write_text("")
    return run_validate(workdir)


def oversized_train(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(codes, "DEFAULT_LIMITS", replace(codes.DEFAULT_LIMITS, max_manifest_bytes=1500))
    assert (workdir / "train.manifest").stat().st_size > 1500 > (workdir / "test.manifest").stat().st_size
    return run_validate(workdir)


FILE_CASES: dict[str, tuple[Callable[..., int], str]] = {
    "missing train": (missing_train, codes.ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT),
    "missing test": (missing_test, codes.ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT),
    "empty train": (empty_train, codes.ERROR_EMPTY_MANIFEST),
    "oversized train": (oversized_train, codes.ERROR_MANIFEST_SIZE_TOO_LARGE),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_manifest_file_errors_write_only_a_summary(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    run, code = FILE_CASES[case]
    args = (workdir, monkeypatch) if run is oversized_train else (workdir,)
    assert run(*args) == 1
    doc = summary(workdir)
    assert [e["code"] for e in doc["errors"]] == [code]
    assert doc["errors"][0]["message"].startswith(codes.message(code))
    assert doc["statistics"] == {}
    # Rekognition produces no validation manifests for a file error.
    assert sorted(p.name for p in (workdir / "out").iterdir()) == ["manifest_summary.json"]
    err = capsys.readouterr().err
    assert code in err and str(workdir) in err


def test_every_code_the_core_cannot_raise_is_triggered_here() -> None:
    triggered = {code for _, code in FILE_CASES.values()} | {
        codes.ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE
    }
    assert set(CLI_ONLY_CODES) <= triggered
    assert all(path == "tests/plugin/test_cli_validate.py" for path in CLI_ONLY_CODES.values())


def test_exit_code_is_zero_for_a_usable_dataset_and_one_for_an_unusable_one(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_validate(workdir) == 0
    assert "usable for training" in capsys.readouterr().out
    assert summary(workdir)["errors"] == []
    (workdir / "other.manifest").write_text(
        jsonl(*[line(ref(200 + i), cls_attr("label", "xy"[i % 2])) for i in range(4)])
    )
    assert run_validate(workdir, test="other.manifest") == 1
    out = capsys.readouterr().out
    assert codes.ERROR_INSUFFICIENT_LABEL_OVERLAP in out and "NOT usable" in out
    assert [e["code"] for e in summary(workdir)["errors"]] == [codes.ERROR_INSUFFICIENT_LABEL_OVERLAP]


@pytest.mark.parametrize(
    "argv",
    [
        ["validate"],
        ["validate", "train.manifest", "--seed", "abc"],
        ["validate", "train.manifest", "--no-such-option"],
    ],
)
def test_usage_errors_exit_with_two(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_installed_command_exit_codes(workdir: Path) -> None:
    exe = str(Path(sys.executable).parent / "customlabels")

    def run(*argv: str) -> int:
        return subprocess.run([exe, *argv], capture_output=True, check=False).returncode

    out = str(workdir / "out")
    assert (
        run(
            "validate",
            str(workdir / "train.manifest"),
            "--test",
            str(workdir / "test.manifest"),
            "--output-dir",
            out,
        )
        == 0
    )
    (workdir / "bad.manifest").write_text("{\n" * 5)
    assert run("validate", str(workdir / "bad.manifest"), "--output-dir", out) == 1
    assert run("validate", "--output-dir", out) == 2


def test_validation_manifests_keep_good_lines_byte_for_byte_and_mark_duplicates(workdir: Path) -> None:
    lines = train_lines()
    lines.insert(5, line(ref(0), cls_attr("label", "b")))  # a later line for image 0
    text = jsonl(*lines)
    (workdir / "train.manifest").write_text(text)
    assert run_validate(workdir) == 0
    written = (workdir / "out" / "training_manifest_with_validation.json").read_text().splitlines()
    source = text.splitlines()
    assert [w == s for w, s in zip(written, source, strict=True)] == [i != 5 for i in range(11)]
    assert line_codes(json.loads(written[5])) == [codes.DUPLICATE_SOURCE_REF]
    training = summary(workdir)["statistics"]["training"]
    assert (training["total_json_lines"], training["invalid_json_lines"]) == (11, 1)
    assert training["error_json_line_indices"] == [6]
    assert validated(workdir, "testing") == held_out_lines()


def test_without_a_test_set_the_train_set_is_auto_split(workdir: Path) -> None:
    assert run_validate(workdir, test=None) == 0
    stats = summary(workdir)["statistics"]
    assert stats["training"]["total_json_lines"] == 10
    assert stats["testing"]["total_json_lines"] == 2  # 20% of each label
    assert not (workdir / "out" / "testing_manifest_with_validation.json").exists()


def test_a_pretty_printed_manifest_is_reported_line_by_line(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "train.manifest").write_text(json.dumps(train_lines(1)[0], indent=2) + "\n")
    assert run_validate(workdir) == 1
    out = validated(workdir)
    assert len(out) == len(json.dumps(train_lines(1)[0], indent=2).splitlines())
    assert all(line_codes(o) == [codes.ERROR_INVALID_JSON_LINE] and len(o) == 1 for o in out)
    training = summary(workdir)["statistics"]["training"]
    assert {e["code"] for e in training["errors"]} >= {
        codes.ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST,
        codes.ERROR_TOO_MANY_RECORDS_IN_ERROR,
    }
    assert "lines with errors: 1, 2, 3" in capsys.readouterr().out


def test_a_200_kb_line_is_an_invalid_json_line(workdir: Path) -> None:
    lines: list[Any] = train_lines()
    lines[3] = lines[3] | {"note": "x" * 200_000}
    (workdir / "train.manifest").write_text(jsonl(*lines))
    assert run_validate(workdir) == 0  # one line of ten
    out = validated(workdir)
    assert line_codes(out[3]) == [codes.ERROR_INVALID_JSON_LINE]
    assert "200," in out[3]["errors"][0]["message"] and "100,000" in out[3]["errors"][0]["message"]
    assert len((workdir / "out" / "training_manifest_with_validation.json").read_bytes()) < 10_000


def classified(first: int, count: int, labels: str = "ab") -> list[dict[str, Any]]:
    return [line(f"s3://b/{i}.jpg", cls_attr("label", labels[i % 2])) for i in range(first, first + count)]


def test_validate_json_usable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "train.manifest").write_text(jsonl(*classified(0, 10)))
    (tmp_path / "test.manifest").write_text(jsonl(*classified(100, 4)))
    outdir = tmp_path / "out"
    code, out, _ = run(
        capsys,
        "validate",
        str(tmp_path / "train.manifest"),
        "--test",
        str(tmp_path / "test.manifest"),
        "--output-dir",
        str(outdir),
        "--json",
    )
    assert code == 0
    doc = parsed(out)
    assert doc["usable"] is True
    assert doc["files"] == {
        "summary": str(outdir / "manifest_summary.json"),
        "training": str(outdir / "training_manifest_with_validation.json"),
        "testing": str(outdir / "testing_manifest_with_validation.json"),
    }
    assert all(Path(p).exists() for p in doc["files"].values())
    assert doc["training"] == {
        "use_case": "IMAGE_LEVEL_LABELS",
        "lines": 10,
        "valid": 10,
        "invalid": 0,
        "ignored": 0,
        "lines_with_errors": 0,
        "errors": {},
        "line_errors": {},
    }
    assert doc["testing"]["lines"] == 4 and doc["errors"] == {}


def test_validate_json_counts_the_error_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = classified(0, 10)
    lines[3] = line("s3://b/3.jpg", det_attr("bb", [("a", -50, 0, 20, 20)], size=(100, 100)))
    (tmp_path / "train.manifest").write_text(jsonl(*lines, "not json", "{broken"))
    (tmp_path / "test.manifest").write_text(jsonl(*classified(100, 4, labels="xy")))
    code, out, err = run(
        capsys,
        "validate",
        str(tmp_path / "train.manifest"),
        "--test",
        str(tmp_path / "test.manifest"),
        "--output-dir",
        str(tmp_path / "out"),
        "--json",
    )
    assert code == 1  # not usable: the exit code is as without --json
    assert err == ""
    doc = parsed(out)
    assert doc["usable"] is False
    assert doc["errors"] == {codes.ERROR_INSUFFICIENT_LABEL_OVERLAP: 1}
    training = doc["training"]
    assert (training["lines"], training["lines_with_errors"]) == (12, 3)
    assert training["line_errors"][codes.ERROR_INVALID_JSON_LINE] == 2
    assert sum(training["line_errors"].values()) >= 3


def test_validate_json_of_a_file_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.manifest").write_text("")
    code, out, _ = run(
        capsys, "validate", str(tmp_path / "empty.manifest"), "--output-dir", str(tmp_path / "o"), "--json"
    )
    assert code == 1
    doc = parsed(out)
    assert doc["usable"] is False and doc["errors"] == {codes.ERROR_EMPTY_MANIFEST: 1}


def test_validate_without_json_is_unchanged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "train.manifest").write_text(jsonl(*classified(0, 10)))
    code, out, _ = run(
        capsys, "validate", str(tmp_path / "train.manifest"), "--output-dir", str(tmp_path / "o")
    )
    assert code == 0
    assert out.splitlines()[0].startswith("training: 10 lines, 10 valid")
    assert out.splitlines()[-1] == f"usable for training; details in {tmp_path / 'o'}/"
