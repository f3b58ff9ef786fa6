"""``bench/report.py`` lists the machine speed each benchmark measured beside that benchmark's rows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the benchmarks are scripts

import machine
import report

SPEED = {"python_loop_s": 0.351, "fresh_copy_gbs": 0.81, "warm_copy_gbs": 0.84}


def test_a_run_without_machine_figures_gets_no_speed_row() -> None:
    assert report._speed_row({"cpus": 2}, "bench_core.py") == []


def test_the_speed_row_carries_the_figures_and_where_they_came_from() -> None:
    [(target, figure, verdict, source)] = report._speed_row({"speed": SPEED}, "bench_publish.py x")
    assert (target, verdict, source) == ("machine of that run", "INFO", "bench_publish.py x")
    assert figure == machine.describe(SPEED)


def test_the_table_shows_each_benchmarks_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    core = {"machine": {"speed": SPEED}, "targets": [{"target": "t", "figure": "f", "passed": True}]}
    (tmp_path / "core.json").write_text(json.dumps(core))
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    found = report.rows()
    assert [r[0] for r in found[:2]] == ["t", "machine of that run"]
    assert found[1][3].startswith("bench_core.py ")
    assert not any(r[0] == "machine of that run" and "sync" in r[3] for r in found)  # not run


def test_describe_names_every_figure() -> None:
    text = machine.describe(SPEED)
    assert "0.35 s" in text and "0.81 GB/s" in text and "0.84 GB/s" in text
