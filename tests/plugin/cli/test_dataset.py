"""``customlabels dataset ...`` and ``snapshot``: ``--json`` documents, progress on standard error.

The dataset commands run the real :class:`sync_service.domain.datasets.Datasets` over an in-memory world (Label
Studio, S3, Redis and the publisher faked at the context), so the progress they report is the real one.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

from converters.jsonio import dumps
from converters.labelconfig import build_label_config
from converters.labelstudio import ReadOptions, task_to_entry
from converters.manifest import entry_to_line
from plugin.cli import dataset, main
from sync_service.domain import datasets as datasets_module
from sync_service.domain.datasets import ON_THIS_MACHINE, Datasets, ProgressCallback
from sync_service.domain.projects import ProjectInfo
from sync_service.edges.state import CachedEntry
from tests.builders import cls_attr, coco, coco_box, coco_image, jsonl, line, service_settings
from tests.plugin.cli.helpers import parsed, run


class FakeLock:
    def __init__(self, world: World) -> None:
        self.world = world

    def acquire(self, blocking: bool = True, blocking_timeout: float | None = None, token: str = "") -> bool:
        if not blocking and self.world.busy:
            self.world.busy = False  # taken by another operation, which ends at once
            return False
        return True

    def reacquire(self) -> None:
        pass

    def owned(self) -> bool:
        return True

    def release(self) -> None:
        pass

    def __enter__(self) -> FakeLock:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class FakeState:
    """``ProjectState`` without Redis: notes are recorded, the publish lock is free."""

    notes: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, redis: Any, project_id: int) -> None:
        self.project_id = project_id

    def note(self, **events: Any) -> None:
        FakeState.notes.append(events)

    def status(self) -> dict[str, Any]:
        return {"last_publish": "2026-12-06T23:00:00Z", "pending_events": len(FakeState.notes)}

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        yield


@dataclass
class World:
    """Label Studio, S3 and Redis of the fake context, in memory."""

    records: dict[int, ProjectInfo] = field(default_factory=dict)
    tasks: dict[int, dict[str, Any]] = field(default_factory=dict)
    config: str = build_label_config(choices=["cat"], boxes=[], multiple=False)
    objects: dict[str, bytes] = field(default_factory=dict)
    listed: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)
    published: int = 0
    busy: bool = False

    # --- the context's parts: this one object plays them all ---
    redis = projects = ls = publisher = storage = property(lambda self: self)

    bucket = "bucket"
    settings = service_settings()

    def lock(self, *args: Any, **kwargs: Any) -> FakeLock:
        return FakeLock(self)

    # Projects
    def find(self, project_id: int) -> ProjectInfo | None:
        return self.records.get(project_id)

    def scan(self) -> list[ProjectInfo]:
        return list(self.records.values())

    def save(self, info: ProjectInfo) -> None:
        self.records[info.label_studio_project_id] = info

    def key(self, info: ProjectInfo, name: str) -> str:
        return f"customlabels/{info.slug}/{name}"

    # Label Studio
    def project(self, project_id: int, fields: Any = None) -> dict[str, Any]:
        return {"id": project_id, "label_config": self.config}

    def update_project(self, project_id: int, *, label_config: str) -> None:
        self.config = label_config

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> list[int]:
        ids = []
        for task in tasks:
            task_id = len(self.tasks) + 1
            self.tasks[task_id] = {"id": task_id, "project": project_id, **task}
            ids.append(task_id)
        return ids

    def export_tasks(self, project_id: int, ids: Any = None) -> list[dict[str, Any]]:
        return [t for i, t in self.tasks.items() if t["project"] == project_id and (ids is None or i in ids)]

    def update_task_data(self, task_id: int, data: dict[str, Any]) -> None:
        self.tasks[task_id]["data"] = data

    def delete_task(self, task_id: int) -> None:
        del self.tasks[task_id]

    # the publisher
    def publish(self, project_id: int) -> None:
        self.published += 1
        info = self.records[project_id]
        for side in ("train", "test"):
            lines = [e.line for e in self.entries_of(project_id)[side] if e.line]
            self.objects[self.key(info, f"{side}.manifest")] = b"".join(x + b"\n" for x in lines)

    # S3 (images are not there: their size is not known) and the image facts' cache
    def hget(self, name: str, key: str) -> None:
        return None

    def read_head(self, source_ref: str, size: int) -> None:
        return None

    def list_objects(self, bucket: str, prefix: str) -> list[str]:
        return [k for k in self.listed if k.startswith(prefix)]

    def get_bytes(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "") -> None:
        self.objects[key] = data

    def list_keys(self, prefix: str, *, delimiter: str | None = None) -> list[str]:
        return sorted(
            {prefix + k[len(prefix) :].split("/")[0] + "/" for k in self.objects if k.startswith(prefix)}
        )

    # what the entry cache would hold
    def entries_of(self, project_id: int) -> dict[str, list[CachedEntry]]:
        out: dict[str, list[CachedEntry]] = {"train": [], "test": []}
        for task_id, task in self.tasks.items():
            if task["project"] != project_id:
                continue
            entry = task_to_entry(task, ReadOptions(), [])
            side = task["data"].get("dataset") or "train"
            out[side].append(
                CachedEntry(
                    task_id, entry.source_ref, side, dumps(entry_to_line(entry)), tuple(entry.label_names), ()
                )
            )
        return out


class FakeDatasets(Datasets):
    """The real operations over the world; only the entry cache, the image upload and the duplicate
    groups are short cuts."""

    def __init__(self, world: World, progress: ProgressCallback | None) -> None:
        super().__init__(world, progress=progress, sources=ON_THIS_MACHINE)  # type: ignore[arg-type]
        self.world = world

    def entries(
        self, info: ProjectInfo, *, all_tasks: bool = False, fresh: bool = False
    ) -> dict[str, list[CachedEntry]]:
        if fresh:
            self._publish(info)
        return self.world.entries_of(info.label_studio_project_id)

    def _duplicate_groups(self, source_refs: list[str], *, distance: int | None = None) -> list[Any]:
        return []  # the world's images have no pixels to hash: no duplicates

    def upload_image(self, info: ProjectInfo, data: bytes, suffix: str) -> str:
        self.world.uploads.append(data.decode())
        return f"s3://bucket/customlabels/{info.slug}/images/{data.decode()}{suffix}"


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    made = World()
    made.save(ProjectInfo(label_studio_project_id=1, title="Pets", slug="pets", datasets={"train": {}}))
    made.save(ProjectInfo(label_studio_project_id=2, title="Other", slug="other", datasets=None))
    FakeState.notes = []
    monkeypatch.setattr(datasets_module, "ProjectState", FakeState)
    monkeypatch.setattr(dataset, "open_datasets", lambda progress=None: FakeDatasets(made, progress))
    return made


def image_dir(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    for label, names in (("cat", ["c1", "c2", "c3"]), ("dog", ["d1", "d2"])):
        (root / label).mkdir(parents=True)
        for name in names:
            (root / label / f"{name}.jpg").write_text(name)
    (root / "notes.txt").write_text("not an image")
    return root


def create_pets(capsys: pytest.CaptureFixture[str], tmp_path: Path, *extra: str) -> tuple[int, str, str]:
    """``dataset create pets --dataset train --from-dir`` a folder of five images, with ``extra``."""
    return run(
        capsys,
        "dataset",
        "create",
        "pets",
        "--dataset",
        "train",
        "--from-dir",
        str(image_dir(tmp_path)),
        *extra,
    )


def test_dataset_create_from_dir_json_on_stdout_progress_on_stderr(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = create_pets(capsys, tmp_path, "--labels-from-folders", "--json")
    assert code == 0
    doc = parsed(out)
    assert doc == {
        "project": 1,
        "dataset": "train",
        "added": 5,
        "updated": 0,
        "skipped": 0,
        "rejected": 0,
        "rejected_lines": [],
    }
    assert sorted(world.uploads) == ["c1", "c2", "c3", "d1", "d2"]
    progress = err.splitlines()
    assert all(x.startswith("customlabels: ") for x in progress)
    assert "\r" not in err
    assert "customlabels: uploading images 0/5 (0%)" not in progress  # counting starts with the first
    assert [x for x in progress if x.startswith("customlabels: uploading images 5/5 in ")]
    assert [x for x in progress if x.startswith("customlabels: importing tasks into Label Studio 5/5 in ")]
    assert [x for x in progress if x.startswith("customlabels: publishing the manifests: done in ")]
    stages = [x.split(" ", 2)[1] for x in progress]
    assert (
        stages.index("finding")
        < stages.index("uploading")
        < stages.index("checking")
        < stages.index("importing")
    )
    labels = sorted(t["data"].get("dataset") for t in world.tasks.values())
    assert labels == ["train"] * 5


def test_dataset_create_without_json_prints_the_summary_line(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = create_pets(capsys, tmp_path)
    assert code == 0
    assert out == "Pets / train: 5 added, 0 updated, 0 already there\n"


def test_json_keeps_plain_progress_lines_even_on_a_terminal(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code = main(
        ["dataset", "create", "pets", "--dataset", "train", "--from-dir", str(image_dir(tmp_path)), "--json"]
    )
    assert code == 0
    assert parsed(capsys.readouterr().out)["added"] == 5
    assert "\r" not in terminal.getvalue() and "\x1b" not in terminal.getvalue()
    assert "customlabels: uploading images 5/5 in" in terminal.getvalue()

    terminal.seek(0)
    terminal.truncate()
    main(["dataset", "create", "pets", "--dataset", "train", "--from-dir", str(image_dir(tmp_path / "2"))])
    assert "\r\x1b[2K[" in terminal.getvalue()  # without --json, the bar


def test_quiet_silences_the_progress(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = create_pets(capsys, tmp_path, "--json", "-q")
    assert code == 0 and parsed(out)["added"] == 5
    assert err == ""


@pytest.mark.parametrize("source", ["s3", "manifest", "dataset", "coco", "csv"])
def test_every_source_reports_progress(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str
) -> None:
    refs = [f"s3://bucket/photos/{label}/{i}.jpg" for i, label in enumerate("ccdd")]
    if source == "s3":
        world.listed = [r.removeprefix("s3://bucket/") for r in refs] + ["photos/readme.txt"]
        args = ["--from-s3", "s3://bucket/photos/", "--labels-from-folders"]
        first = "customlabels: listing s3://bucket/photos/ 4 in "
    elif source == "manifest":
        path = tmp_path / "in.manifest"
        path.write_text(jsonl(*[line(r, cls_attr("label", "cat")) for r in refs]))
        args = ["--from-manifest", str(path)]
        first = f"customlabels: reading {path} 4 in "
    elif source == "dataset":
        world.import_tasks(2, [{"data": {"image": r, "dataset": "train"}} for r in refs])
        args = ["--from-dataset", "other/train"]
        first = "customlabels: reading Other/train 4 in "
    elif source == "coco":
        path = tmp_path / "coco.json"
        images = [coco_image(i + 1, f"{i}.jpg") for i in range(4)]
        path.write_text(json.dumps(coco(images, [coco_box(1, 1, 1, [1, 1, 5, 5])], {1: "bolt"})))
        args = ["--from-coco", str(path), "--s3-prefix", "s3://bucket/photos/"]
        first = f"customlabels: reading {path}: done in "
    else:
        path = tmp_path / "in.csv"
        path.write_text("".join(f"{r},cat\n" for r in refs))
        args = ["--from-csv", str(path)]
        first = f"customlabels: reading {path}: done in "
    code, out, err = run(capsys, "dataset", "create", "pets", "--dataset", "train", *args, "--json")
    assert code == 0, err
    assert parsed(out)["added"] == 4
    assert any(x.startswith(first) for x in err.splitlines()), err
    assert any(x.startswith("customlabels: checking entries 4/4 in ") for x in err.splitlines())
    assert any(
        x.startswith("customlabels: importing tasks into Label Studio 4/4 in ") for x in err.splitlines()
    )


def test_waiting_for_the_project_lock_is_shown(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world.busy = True
    code, _, err = create_pets(capsys, tmp_path, "--json")
    assert code == 0
    assert "customlabels: waiting for another dataset operation on the project" in err.splitlines()


def test_distribute_json(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    # Ten labeled images in the training dataset, through a manifest import as a user would.
    manifest = "".join(
        json.dumps(line(f"s3://b/{i}.jpg", cls_attr("label", "ab"[i % 2]))) + "\n" for i in range(10)
    )
    ops = FakeDatasets(world, None)
    ops.update_entries(world.records[2], "train", manifest.encode())
    code, out, err = run(capsys, "dataset", "distribute", "other", "--json")
    assert code == 0, err
    doc = parsed(out)
    assert doc == {"train": 8, "test": 2}
    moved = [i for i, t in world.tasks.items() if t["data"]["dataset"] == "test"]
    assert len(moved) == 2
    assert FakeState.notes[-1] == {"dirty": moved}  # task data changes send no webhook: told here
    assert any(x.startswith("customlabels: placing entries 10/10 in ") for x in err.splitlines())


def test_snapshot_create_list_and_diff_json(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.import_tasks(2, [{"data": {"image": "s3://b/1.jpg", "dataset": "train"}}])
    code, out, err = run(capsys, "snapshot", "other", "--json")
    assert code == 0, err
    first = parsed(out)
    assert first["entries"] == {"train": 1, "test": 0}
    assert first["s3"] == f"s3://bucket/customlabels/other/snapshots/{first['id']}/"
    assert set(first["sha256"]) == {"train.manifest", "test.manifest", "validation/manifest_summary.json"}
    assert any(x.startswith("customlabels: copying files 4/4 in ") for x in err.splitlines())

    world.import_tasks(2, [{"data": {"image": "s3://b/2.jpg", "dataset": "train"}}])
    second = parsed(run(capsys, "snapshot", "other", "--json")[1])
    assert second["id"] != first["id"]

    code, out, _ = run(capsys, "snapshot", "list", "other", "--json")
    assert code == 0 and parsed(out) == sorted([first["id"], second["id"]])

    code, out, _ = run(capsys, "snapshot", "diff", f"other/{first['id']}", f"other/{second['id']}", "--json")
    assert code == 0
    diff = parsed(out)
    assert [d["source-ref"] for d in diff["added"]] == ["s3://b/2.jpg"]
    assert diff["removed"] == [] and diff["relabelled"] == []


def test_describe_and_labels_json(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = "".join(json.dumps(line(f"s3://b/{i}.jpg", cls_attr("label", "cat"))) + "\n" for i in range(3))
    FakeDatasets(world, None).update_entries(world.records[1], "train", manifest.encode())
    code, out, err = run(capsys, "dataset", "describe", "pets", "--dataset", "train", "--json")
    assert code == 0
    assert err.startswith("# as published 2026-12-06T23:00:00Z")  # reads say how fresh they are
    doc = parsed(out)
    assert doc["DatasetStats"] == {
        "TotalEntries": 3,
        "LabeledEntries": 3,
        "TotalLabels": 1,
        "ErrorEntries": 0,
    }
    code, out, _ = run(capsys, "dataset", "labels", "pets", "--json")
    assert parsed(out) == [{"LabelName": "cat", "LabelStats": {"EntryCount": 3, "BoundingBoxCount": 0}}]


def test_a_dataset_error_with_json(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "dataset", "describe", "nowhere", "--dataset", "train", "--json")
    assert code == 1
    assert parsed(out) == {"status": "error", "error": "no project 'nowhere'"}
    assert err == "error: no project 'nowhere'\n"


def test_a_configuration_error_with_json(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CUSTOMLABELS_BUCKET", raising=False)
    code, out, err = run(capsys, "dataset", "describe", "pets", "--dataset", "train", "--json")
    assert code == 2
    doc = parsed(out)
    assert doc["status"] == "error" and "CUSTOMLABELS_BUCKET" in doc["error"]
    assert "CUSTOMLABELS_BUCKET" in err
