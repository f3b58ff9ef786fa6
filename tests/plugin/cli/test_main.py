"""The root of ``customlabels`` (plugin.cli): help, the installed console script, ``--json``'s error
document and its refusal of standard output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from plugin.cli import main
from tests.plugin.cli.helpers import SAMPLES, parsed, read_lines, run


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


def test_a_failing_command_with_json_prints_an_error_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_path = tmp_path / "dupes.csv"
    csv_path.write_text("s3://b/1.jpg,cat\ns3://b/1.jpg,dog\n")
    code, out, err = run(
        capsys, "convert", "csv-to-manifest", str(csv_path), "-o", str(tmp_path / "o.manifest"), "--json"
    )
    assert code == 1  # exit codes do not change with --json
    doc = parsed(out)
    assert doc["status"] == "error" and "duplicate image" in doc["error"]
    assert err.startswith("error: ") and "duplicate image" in err


def test_json_refuses_an_output_on_standard_output(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["convert", "ls-to-manifest", str(SAMPLES / "tasks.json"), "-o", "-", "--json"])
    assert done.value.code == 2
    assert "--json" in capsys.readouterr().err


def test_down_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "down", "--home", str(tmp_path), "--json")
    assert code == 0
    assert parsed(out) == {
        "status": "nothing is running from this home",
        "stopped": [],
        "home": str(tmp_path),
    }
