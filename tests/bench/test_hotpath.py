"""The save-throughput figures of ``bench/hotpath.py``: per-round ratios, their interval, the verdict."""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # the benchmarks are scripts

import hotpath


def run(receiver: str, rate: float) -> hotpath.SaveRun:
    return hotpath.SaveRun(receiver, saves=round(rate * 10), seconds=10.0, failures=0)


def test_rounds_pair_adjacent_runs_whichever_side_goes_first() -> None:
    runs = [
        run("bare", 20),
        run("ours", 19),
        run("ours", 18),
        run("bare", 20),
        run("bare", 10),
        run("ours", 9),
    ]
    assert hotpath.pair_ratios(runs) == pytest.approx([0.95, 0.90, 0.90])


def test_a_round_without_both_sides_or_bare_saves_gives_no_ratio() -> None:
    runs = [run("ours", 19), run("ours", 18), run("bare", 0), run("ours", 5), run("bare", 20)]
    assert hotpath.pair_ratios(runs) == []


def test_interval_is_students_t_around_the_mean() -> None:
    low, high = hotpath.interval95([1.0, 2.0, 3.0])  # mean 2, sd 1, t(2 df) 4.303
    assert (low, high) == pytest.approx((2 - 4.303 / math.sqrt(3), 2 + 4.303 / math.sqrt(3)))
    values = [0.9, 1.0] * 10  # past the table: the quantile of 10 degrees of freedom, 2.228
    half = 2.228 * statistics.stdev(values) / math.sqrt(20)
    assert hotpath.interval95(values) == pytest.approx((0.95 - half, 0.95 + half))


def test_one_value_has_no_interval() -> None:
    assert all(math.isnan(v) for v in hotpath.interval95([0.95]))


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [(0.95, 0.97, "met"), (0.90, 0.949, "not met"), (0.92, 0.96, "undecided")],
)
def test_verdict_calls_only_what_the_interval_decides(low: float, high: float, expected: str) -> None:
    assert hotpath.verdict(low, high, 0.95) == expected
