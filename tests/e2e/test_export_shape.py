"""The benchmark's real-shaped tasks have the shape of a real export: the same keys in the same order,
with the same value types, as Label Studio writes them, and in its layout (a JSON array on one line,
which the fast path of ls-to-manifest takes)."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugin.cli import fastpath
from tests import realparts

pytestmark = pytest.mark.e2e

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_core.py"


def bench_core() -> Any:
    """bench/bench_core.py as a module (bench/ is no package)."""
    spec = importlib.util.spec_from_file_location("bench_core", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_core", module)
    spec.loader.exec_module(module)
    return module


def kinds(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """Each key of ``obj`` in order, with the JSON type of its value (null apart)."""
    return [(key, type(value).__name__) for key, value in obj.items()]


def test_the_benchmarks_real_tasks_have_the_shape_of_a_real_export(
    label_studio: realparts.LabelStudioServer, tmp_path: Path
) -> None:
    bench = bench_core()
    results = bench._results(random.Random(1), 1)
    api = httpx.Client(
        base_url=label_studio.url, headers={"Authorization": f"Token {label_studio.token}"}, timeout=60
    )
    project = api.post("/api/projects/", json={"title": "export shape", "label_config": bench.label_config()})
    project.raise_for_status()
    pid = project.json()["id"]
    try:
        tasks = [
            {"data": {"image": "s3://b/a.jpg"}, "annotations": [{"result": results}]},
            {
                "data": {"image": "s3://b/b.jpg"},
                "predictions": [{"result": results, "score": 0.5, "model_version": "m1"}],
            },
        ]
        api.post(f"/api/projects/{pid}/import", json=tasks).raise_for_status()
        listed = api.get("/api/tasks/", params={"project": pid}).json()
        ids = sorted(task["id"] for task in listed["tasks"])
        (prediction,) = api.get("/api/predictions/", params={"task": ids[1]}).json()
        made = api.post(
            f"/api/tasks/{ids[1]}/annotations/",
            json={"result": results, "lead_time": 12.3, "parent_prediction": prediction["id"]},
        )
        made.raise_for_status()
        export = api.get(f"/api/projects/{pid}/export", params={"exportType": "JSON"})
        export.raise_for_status()
    finally:
        api.delete(f"/api/projects/{pid}/")
    body = export.content
    real = json.loads(body)
    assert len(real) == 2
    ours = [bench._real_task(random.Random(seed), 1) for seed in range(40)]
    from_model = next(task for task in ours if task["annotations"][0]["prediction"])
    by_hand = next(task for task in ours if not task["annotations"][0]["prediction"])
    for got, want in ((by_hand, real[0]), (from_model, real[1])):
        assert list(got) == list(want)
        assert list(got["annotations"][0]) == list(want["annotations"][0])
        assert list(got["annotations"][0]["prediction"]) == list(want["annotations"][0]["prediction"])
        # Types match where neither value is null (either side may leave a key empty that the other fills).
        for ours_kinds, real_kinds in (
            (kinds(got), kinds(want)),
            (kinds(got["annotations"][0]), kinds(want["annotations"][0])),
        ):
            for (key, kind), (_, real_kind) in zip(ours_kinds, real_kinds, strict=True):
                assert kind == real_kind or "NoneType" in (kind, real_kind), key
    # Label Studio's layout: one line, compact; the benchmark writes it so, and the fast path takes it.
    assert body.startswith(b'[{"id":') and b"\n" not in body.strip()
    path = tmp_path / "tasks.json"
    bench.write_tasks(path, 3)
    written = path.read_bytes()
    assert written.startswith(b'[{"id":1,"annotations":[') and b"\n" not in written
    real_path = tmp_path / "export.json"
    real_path.write_bytes(body)
    for file in (path, real_path):
        layout = fastpath.find_task_layout(str(file))
        assert layout is not None and layout.cut == "task"
