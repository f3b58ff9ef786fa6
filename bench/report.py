"""One table of every benchmark target with its latest figure, from ``bench/results/*.json``.

Run from the repository root after the benchmarks (``bash bench/run_all.sh`` runs them all, then this)::

    .venv/bin/python bench/report.py

Each row names the target, the figure measured, PASS or FAIL, and the benchmark and time it came from;
a benchmark that has not been run is listed as missing, never as passed. Exit status: 0 when every
target passed, 1 otherwise.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from machine import describe  # bench/machine.py, beside this script

RESULTS = Path(__file__).resolve().parent / "results"
SOURCES = (
    ("core.json", "bench_core.py", "converters: ls-to-manifest vs the SDK, manifest-to-ls, validate"),
    ("sync.json", "bench_sync.py", "sync service: intake, webhook -> manifest, full resync"),
)


def rows() -> list[tuple[str, str, str, str]]:
    """(target, figure, verdict, source) for each target of each benchmark's latest results."""
    out: list[tuple[str, str, str, str]] = []
    for name, script, what in SOURCES:
        path = RESULTS / name
        if not path.exists():
            out.append((what, f"not run: .venv/bin/python bench/{script}", "MISSING", script))
            continue
        report: dict[str, Any] = json.loads(path.read_text())
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
        quick = " (--quick: not the targets' conditions)" if report.get("quick") else ""
        for target in report.get("targets", []):
            verdict = (
                "PASS" if target["passed"] and not quick else "FAIL" if not target["passed"] else "QUICK"
            )
            out.append((target["target"], target["figure"] + quick, verdict, f"{script} {stamp}"))
        out.extend(_speed_row(report.get("machine") or {}, f"{script} {stamp}"))
    publish = RESULTS / "publish.json"
    if publish.exists():
        data = json.loads(publish.read_text())
        figures = ", ".join(
            f"{r['n']:,}: update {r['update_median_s']:.2f} s / rebuild {r['rebuild_s']:.1f} s"
            for r in data["rows"]
        )
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(publish.stat().st_mtime))
        out.append(
            (
                "publish time vs entries (table and plot: bench/publish_growth.md)",
                figures,
                "INFO",
                f"bench_publish.py {stamp}",
            )
        )
        out.extend(_speed_row(data.get("machine") or {}, f"bench_publish.py {stamp}"))
    else:
        out.append(
            (
                "publish time vs entries",
                "not run: .venv/bin/python bench/bench_publish.py",
                "MISSING",
                "bench_publish.py",
            )
        )
    faults = RESULTS / "faults.json"
    if faults.exists():
        for scenario, facts in sorted(json.loads(faults.read_text()).items()):
            shown = ", ".join(f"{k} {v}" for k, v in sorted(facts.items()) if k != "at")
            out.append((f"fault: {scenario}", shown, "INFO", f"tests/e2e/faults {facts.get('at', '')}"))
    else:
        out.append(
            ("faults: time to converge", "not run: bash scripts/test.sh tests/e2e/faults", "INFO", "tests")
        )
    return out


def _speed_row(machine: dict[str, Any], source: str) -> list[tuple[str, str, str, str]]:
    """The machine's speed in a benchmark's results (bench/machine.py), as an INFO row; none before it."""
    speed = machine.get("speed")
    return [("machine of that run", describe(speed), "INFO", source)] if speed else []


def main() -> int:
    found = rows()
    width = max(len(r[0]) for r in found)
    print(f"{'target':<{width}}  {'result':<7}  figure  [source]")
    print("-" * (width + 40))
    for target, figure, verdict, source in found:
        print(f"{target:<{width}}  {verdict:<7}  {figure}  [{source}]")
    judged = [r for r in found if r[2] != "INFO"]
    failed = [r for r in judged if r[2] != "PASS"]
    print(f"\n{len(judged) - len(failed)} of {len(judged)} targets passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
