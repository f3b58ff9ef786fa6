"""What the dataset operations tell their progress callback: the stages in order with real counts, and
the wait for another operation's project lock (on a real Redis)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from redis import Redis

from converters.jsonio import RawLine
from sync_service.domain.datasets import ON_THIS_MACHINE, DatasetError, Datasets, no_progress
from sync_service.domain.projects import ProjectInfo
from tests.builders import cls_attr, jsonl, line
from tests.sync_service.domain.test_datasets import Recorder

INFO = ProjectInfo(label_studio_project_id=1, title="Pets", slug="pets")

Call = tuple[str, int, "int | None"]


class Heard:
    """A progress callback that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        self.calls.append((stage, done, total))

    def stages(self) -> list[str]:
        return list(dict.fromkeys(stage for stage, _, _ in self.calls))


def test_the_default_callback_is_silent_and_the_operations_still_run() -> None:
    ops = Datasets(None)  # type: ignore[arg-type]
    assert ops.progress is no_progress
    assert no_progress("anything", 1, 2) is None


def test_reading_a_manifest_counts_its_lines() -> None:
    heard = Heard()
    text = jsonl(*[line(f"s3://b/{i}.jpg", cls_attr("a", "cat")) for i in range(7)])
    lines = [RawLine(n, x.encode(), False, len(x)) for n, x in enumerate(text.splitlines(), start=1)]
    Recorder(progress=heard).from_manifest_lines(INFO, "train", lines, source="in.manifest")
    assert heard.calls == [("reading in.manifest", n, None) for n in range(1, 8)]


def test_a_folder_counts_its_uploads(tmp_path: Any) -> None:
    for name in ("a.jpg", "b.png", "c.txt", "sub/d.jpeg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(name)
    heard = Heard()
    ops = Recorder(progress=heard, sources=ON_THIS_MACHINE)  # a folder is a command-line source
    ops.upload_image = lambda info, data, suffix: f"s3://b/{data.decode()}"  # type: ignore[method-assign]
    ops.from_dir(INFO, "train", str(tmp_path))
    assert heard.calls == [
        (f"finding images in {tmp_path}", 0, None),
        ("uploading images", 1, 3),
        ("uploading images", 2, 3),
        ("uploading images", 3, 3),
    ]
    assert len(ops.imported) == 3


@pytest.fixture
def redis(redis_url: str) -> Redis:
    return Redis.from_url(redis_url)


def test_waiting_for_another_operations_lock_is_a_stage(redis: Redis) -> None:
    heard = Heard()
    ctx = SimpleNamespace(redis=redis)
    first, second = Datasets(ctx, progress=Heard()), Datasets(ctx, progress=heard)  # type: ignore[arg-type]
    with first.exclusive(INFO):
        with pytest.raises(DatasetError) as refused, second.exclusive(INFO, wait=0.3):
            pass
        assert refused.value.exception == "ResourceInUseException"
        assert heard.calls == [("waiting for another dataset operation on the project", 0, None)]
    heard.calls.clear()
    with second.exclusive(INFO):  # free now: taken at once, nothing to say
        pass
    assert heard.calls == []


def test_an_operation_that_lost_its_lock_stops_at_its_next_step(redis: Redis) -> None:
    heard = Heard()
    ops = Datasets(SimpleNamespace(redis=redis), progress=heard)  # type: ignore[arg-type]
    key = f"cl:p:{INFO.label_studio_project_id}:datasets-lock"
    with pytest.raises(DatasetError) as stopped, ops.exclusive(INFO):
        ops.progress("importing", 1, 3)
        ops._checkpoint()
        redis.set(key, "another-host:2:0")  # ours expired during a stall; another operation took it
        ops._checkpoint()  # before the next batch of changes to Label Studio
    assert stopped.value.exception == "ResourceInUseException" and "lost" in str(stopped.value)
    assert heard.calls == [("importing", 1, 3)]
    assert redis.get(key) == b"another-host:2:0"  # the other operation's lock is left alone
    redis.delete(key)
