"""``customlabels doctor``: on an empty home, its look at Label Studio's ``export/`` folder and
``doctor --prune-exports``.

A temporary home holds a Label Studio data dir whose ``export/`` folder has files named as Label Studio
names its exports and files that only look like them, each with a set modification time: pruning
deletes the old exports and nothing else.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from plugin.cli import main
from plugin.localstack import doctor
from plugin.localstack.layout import Layout
from plugin.localstack.processes import free_port

NOW = time.time()
HOUR = 3600.0
EXPORT = "project-12-at-2026-11-20-09-41-0f3a9c2e"  # the name Label Studio gives one export request


def test_doctor_on_an_empty_home_fails_with_fixes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--home", str(tmp_path / "none"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["checks"][0]["fix"]
    assert main(["doctor", "--home", str(tmp_path / "none")]) == 1
    assert "fix: run `customlabels up`" in capsys.readouterr().out


def _write(path: Path, size: int, *, age_hours: float) -> Path:
    path.write_bytes(b"x" * size)
    os.utime(path, (NOW - age_hours * HOUR, NOW - age_hours * HOUR))
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home whose Label Studio export folder holds old and young exports and files that are not."""
    home = tmp_path / "home"
    folder = doctor.export_dir(Layout(home))
    folder.mkdir(parents=True)
    _write(folder / f"{EXPORT}.json", 1000, age_hours=3)  # old: removed
    _write(folder / f"{EXPORT}-info.json", 200, age_hours=3)  # old: removed
    _write(folder / "project-7-at-2026-11-25-14-02-ab12cd34.json", 50, age_hours=2)  # old: removed
    _write(folder / "project-7-at-2026-11-25-15-58-ab12cd34.json", 70, age_hours=0.25)  # young: kept
    _write(folder / "project-7-at-2026-11-25-15-58-ab12cd34-info.json", 30, age_hours=0.25)  # young: kept
    for name in (
        "notes.txt",
        f"{EXPORT}.json.bak",
        f"{EXPORT}.zip",
        "project-x-at-2026-11-20-09-41-0f3a9c2e.json",  # no project id
        "project-12-at-2026-11-20-09-41-0F3A9C2E.json",  # md5 is lower-case hex
        "project-12-at-2026-11-20-0f3a9c2e.json",  # no hour and minute
        "Label Studio export project-12-at-2026-11-20-09-41-0f3a9c2e.json",
        "project-12-at-2026-11-20-09-41-0f3a9c2e-info.json.tmp",
    ):
        _write(folder / name, 10, age_hours=48)
    (folder / "project-13-at-2026-11-20-09-41-00000000.json").mkdir()  # a folder named like one
    outside = _write(home / "kept.json", 10, age_hours=48)
    link = folder / "project-14-at-2026-11-20-09-41-11111111.json"
    link.symlink_to(outside)  # a link named like one: neither it nor its target
    os.utime(link, (NOW - 48 * HOUR, NOW - 48 * HOUR), follow_symlinks=False)
    return home


KEPT = {
    "project-7-at-2026-11-25-15-58-ab12cd34.json",
    "project-7-at-2026-11-25-15-58-ab12cd34-info.json",
    "notes.txt",
    f"{EXPORT}.json.bak",
    f"{EXPORT}.zip",
    "project-x-at-2026-11-20-09-41-0f3a9c2e.json",
    "project-12-at-2026-11-20-09-41-0F3A9C2E.json",
    "project-12-at-2026-11-20-0f3a9c2e.json",
    "Label Studio export project-12-at-2026-11-20-09-41-0f3a9c2e.json",
    "project-12-at-2026-11-20-09-41-0f3a9c2e-info.json.tmp",
    "project-13-at-2026-11-20-09-41-00000000.json",
    "project-14-at-2026-11-20-09-41-11111111.json",
}


def _left(home: Path) -> set[str]:
    return {path.name for path in doctor.export_dir(Layout(home)).iterdir()}


def test_prune_deletes_only_label_studio_exports_older_than_the_limit(home: Path) -> None:
    folder = doctor.export_dir(Layout(home))
    pruned = doctor.prune_exports(folder, older_than_hours=1, now=NOW)
    assert (pruned.removed, pruned.removed_bytes, pruned.kept, pruned.failed) == (3, 1250, 2, ())
    assert _left(home) == KEPT
    assert (home / "kept.json").read_bytes() == b"x" * 10  # the link's target
    again = doctor.prune_exports(folder, older_than_hours=1, now=NOW)
    assert (again.removed, again.removed_bytes, again.kept) == (0, 0, 2)


def test_prune_keeps_what_is_younger_than_older_than(home: Path) -> None:
    pruned = doctor.prune_exports(doctor.export_dir(Layout(home)), older_than_hours=2.5, now=NOW)
    assert (pruned.removed, pruned.removed_bytes, pruned.kept) == (2, 1200, 3)
    zero = doctor.prune_exports(doctor.export_dir(Layout(home)), older_than_hours=0, now=NOW)
    assert (zero.removed, zero.kept) == (3, 0)


def test_prune_of_a_missing_folder_removes_nothing(tmp_path: Path) -> None:
    pruned = doctor.prune_exports(tmp_path / "none", older_than_hours=1)
    assert (pruned.removed, pruned.removed_bytes, pruned.kept, pruned.failed) == (0, 0, 0, ())


def test_prune_exports_on_the_command_line_with_json(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--home", str(home), "--prune-exports", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document == {
        "ok": True,
        "home": str(home),
        "older_than_hours": 1.0,
        "folder": str(doctor.export_dir(Layout(home))),
        "removed": 3,
        "removed_bytes": 1250,
        "kept": 2,
        "failed": [],
    }
    assert _left(home) == KEPT


def test_prune_exports_on_the_command_line_in_words(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--home", str(home), "--prune-exports", "--older-than", "0.1"]) == 0
    out = capsys.readouterr().out
    folder = doctor.export_dir(Layout(home))
    assert out == f"removed 5 export file(s), 0.0 MB, older than 0.1 hour(s) from {folder}; kept 0 younger\n"
    assert _left(home) == KEPT - {
        "project-7-at-2026-11-25-15-58-ab12cd34.json",
        "project-7-at-2026-11-25-15-58-ab12cd34-info.json",
    }


@pytest.mark.parametrize("hours", ["-1", "soon", "nan", "inf"])
def test_older_than_is_a_number_of_hours(home: Path, hours: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        main(["doctor", "--home", str(home), "--prune-exports", "--older-than", hours])
    assert raised.value.code == 2
    assert "expected a number of hours" in capsys.readouterr().err
    assert len(_left(home)) == len(KEPT) + 3  # nothing deleted


def test_older_than_goes_with_prune_exports(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--home", str(home), "--older-than", "2", "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"ok": False, "error": "--older-than goes with --prune-exports"}
    assert captured.err == "error: --older-than goes with --prune-exports\n"


def test_the_check_counts_files_and_bytes(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    assert doctor.check_exports(folder).to_json() == {
        "name": "label studio exports",
        "status": "ok",
        "detail": f"{folder}: 0 file(s), 0.0 MB",
        "fix": "",
    }
    folder.mkdir()
    _write(folder / f"{EXPORT}.json", 1_500_000, age_hours=0)
    _write(folder / "notes.txt", 100_000, age_hours=0)  # every file counts: the folder is what grows
    check = doctor.check_exports(folder)
    assert (check.status, check.detail) == ("ok", f"{folder}: 2 file(s), 1.6 MB")


def test_the_check_warns_above_a_thousand_files(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    for number in range(doctor.EXPORTS_WARN_FILES + 1):
        (folder / f"project-1-at-2026-11-20-09-41-{number:08x}.json").touch()
    check = doctor.check_exports(folder)
    assert check.status == "warn"
    assert check.detail.startswith(f"{folder}: 1,001 file(s), 0.0 MB")
    assert "`customlabels doctor --prune-exports`" in check.fix


def test_the_check_warns_above_500_mb(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    with (folder / f"{EXPORT}.json").open("wb") as sparse:  # no disk used: a hole of 500 MB
        sparse.truncate(doctor.EXPORTS_WARN_BYTES + 1)
    check = doctor.check_exports(folder)
    assert (check.status, check.detail.split(" (")[0]) == ("warn", f"{folder}: 1 file(s), 500.0 MB")


def test_doctor_reports_the_export_folder_of_the_local_stack(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Everything else is away (free ports): the export folder is still reported, as a check of its own."""
    for name in [name for name in os.environ if name.startswith("CUSTOMLABELS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CUSTOMLABELS_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    ports = [str(free_port()) for _ in range(3)]
    args = ["doctor", "--home", str(home), "--json", "--ls-port", ports[0], "--port", ports[1]]
    assert main([*args, "--s3-port", ports[2]]) == 1
    checks = {check["name"]: check for check in json.loads(capsys.readouterr().out)["checks"]}
    assert checks["label studio exports"] == {
        "name": "label studio exports",
        "status": "ok",
        "detail": f"{doctor.export_dir(Layout(home))}: 13 file(s), 0.0 MB",
        "fix": "",
    }


def test_a_file_that_cannot_be_deleted_is_named_and_fails_the_command(
    home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    unlink = Path.unlink

    def refuse_info(path: Path, missing_ok: bool = False) -> None:
        if path.name.endswith("-info.json"):
            raise PermissionError(13, "Permission denied", str(path))
        unlink(path, missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse_info)
    assert main(["doctor", "--home", str(home), "--prune-exports"]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("removed 2 export file(s), 0.0 MB, older than 1 hour(s)")
    assert captured.err == f"error: could not delete {EXPORT}-info.json: Permission denied\n"
    assert f"{EXPORT}-info.json" in _left(home)
