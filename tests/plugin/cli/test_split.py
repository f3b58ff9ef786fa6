"""``customlabels split``: an earlier split kept, Rekognition's distribute code, ``--json``."""

from __future__ import annotations

from pathlib import Path

import pytest

from converters import codes
from plugin.cli import main
from tests.builders import cls_attr, jsonl, line
from tests.plugin.cli.helpers import parsed, read_lines, run, write_lines
from tests.plugin.cli.test_validate import classified, ref, train_lines


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


def test_split_warns_with_the_distribute_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "all.manifest"
    src.write_text(jsonl(*train_lines(4), line(ref(9), cls_attr("label", "lonely"))))
    train, test = tmp_path / "train.manifest", tmp_path / "test.manifest"
    assert main(["split", str(src), "--train-out", str(train), "--test-out", str(test)]) == 0
    err = capsys.readouterr().err
    assert codes.ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE in err and "lonely (1)" in err
    assert "lonely" in train.read_text() and "lonely" not in test.read_text()


def test_split_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "all.manifest").write_text(jsonl(*classified(0, 20), *classified(50, 1, labels="zz")))
    train, test = tmp_path / "train.manifest", tmp_path / "test.manifest"
    code, out, err = run(
        capsys,
        "split",
        str(tmp_path / "all.manifest"),
        "--train-out",
        str(train),
        "--test-out",
        str(test),
        "--json",
    )
    assert code == 0
    doc = parsed(out)
    assert doc["train"] == {"output": str(train), "count": len(train.read_text().splitlines())}
    assert doc["test"] == {"output": str(test), "count": len(test.read_text().splitlines())}
    assert doc["train"]["count"] + doc["test"]["count"] == 21 and doc["test"]["count"] == 4
    assert (doc["test_fraction"], doc["seed"], doc["labels_short"]) == (0.2, 0, {"z": 1})
    assert codes.ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE in err  # the warning stays on stderr
