"""Reads (DescribeDataset, ListDatasetEntries, ListDatasetLabels, the console) serve what was last
published and say how fresh it is; they never publish (on a real Redis; Label Studio and the publisher are
stand-ins that fail the test when a read reaches them for anything but the label config)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from redis import Redis

from converters.jsonio import dumps
from converters.labelconfig import build_label_config
from sync_service.domain.datasets import Datasets, dataset_record
from sync_service.domain.projects import ProjectInfo
from sync_service.edges.state import CachedEntry, ProjectState
from tests.builders import cls_attr, line, service_settings

PID = 4343
INFO = ProjectInfo(PID, "Reads", "reads", datasets={"train": dataset_record(), "test": dataset_record()})


class NoPublish:
    def publish(self, project_id: int, **_: Any) -> None:
        raise AssertionError("a read published")


class ConfigOnly:
    def project(self, project_id: int, **_: Any) -> dict[str, Any]:
        return {"id": project_id, "label_config": build_label_config(choices=["cat", "dog"])}

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a read called Label Studio's {name}")


def cached(task_id: int, label: str, dataset: str) -> CachedEntry:
    ref = f"s3://b/{task_id}.jpg"
    return CachedEntry(task_id, ref, dataset, dumps(line(ref, cls_attr("label", label))), (label,), ())


@pytest.fixture
def state(redis_url: str) -> Iterator[ProjectState]:
    s = ProjectState(Redis.from_url(redis_url), PID)
    s.forget()
    yield s
    s.forget()


def test_reads_serve_the_published_entries_and_say_how_fresh_they_are(state: ProjectState) -> None:
    state.replace_all([cached(1, "cat", "train"), cached(2, "dog", "train"), cached(3, "cat", "test")])
    state.set_status(last_publish="2026-12-06T23:00:00Z")
    state.note(dirty=[2])  # a change received since: pending, not yet in the reads
    ops = Datasets(
        SimpleNamespace(
            redis=state.redis, ls=ConfigOnly(), publisher=NoPublish(), settings=service_settings()
        )
    )  # type: ignore[arg-type]
    assert ops.describe(INFO, "train")["TotalEntries"] == 2
    lines, _ = ops.list_entries(INFO, "test")
    assert len(lines) == 1
    assert {s.name: s.entries for s in ops.labels(INFO)} == {"cat": 2, "dog": 1}
    assert ops.freshness(INFO) == {
        "published": "2026-12-06T23:00:00Z",
        "pending_events": 1,
        "last_error": None,
    }


def test_a_change_asks_for_a_publish_first(state: ProjectState) -> None:
    published: list[int] = []
    publisher = SimpleNamespace(publish=lambda project_id, **_: published.append(project_id))
    ops = Datasets(
        SimpleNamespace(redis=state.redis, ls=ConfigOnly(), publisher=publisher, settings=service_settings())
    )  # type: ignore[arg-type]
    ops.entries(INFO, fresh=True)
    assert published == [PID]
