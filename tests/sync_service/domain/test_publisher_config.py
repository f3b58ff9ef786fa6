"""When the publisher reads the label config from Label Studio, and how long it waits for more events."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis

from converters.duplicates import DuplicateGroup
from converters.labelconfig import build_label_config
from sync_service.domain import publisher as publisher_module
from sync_service.domain.fingerprints import record_groups
from sync_service.domain.projects import ProjectInfo, Projects
from sync_service.domain.publisher import Publisher
from sync_service.domain.taskcache import payload_parts
from sync_service.edges.s3 import Storage
from sync_service.edges.state import LockLost, ProjectState
from tests.builders import MemoryLabelStudio, choices, task
from tests.realparts import S3

PID = 4242


@pytest.fixture
def world(redis_url: str, s3: S3, bucket: str) -> Iterator[tuple[Publisher, MemoryLabelStudio, ProjectState]]:
    redis = Redis.from_url(redis_url)
    storage = Storage(s3.client, bucket)
    projects = Projects(redis, storage, "unit")
    projects.save(ProjectInfo(PID, "Config reads", "config-reads"))
    ls = MemoryLabelStudio(
        build_label_config(choices=["cat", "dog"]),
        [
            task("s3://b/1.jpg", choices("cat"), tid=1, dataset="train"),
            task("s3://b/2.jpg", tid=2, dataset="test"),
        ],
    )
    state = ProjectState(redis, PID)
    state.forget()
    yield Publisher(redis, storage, ls, projects), ls, state  # type: ignore[arg-type]
    state.forget()
    projects.forget(PID)


def test_ordinary_events_reuse_a_recent_config_and_project_updates_read_it_again(
    world: tuple[Publisher, MemoryLabelStudio, ProjectState], monkeypatch: pytest.MonkeyPatch
) -> None:
    pub, ls, state = world
    assert pub.publish(PID) is not None and ls.config_reads == 1  # the first build reads it
    state.note(dirty=[2])
    ls.tasks[2] = task("s3://b/2.jpg", choices("dog"), tid=2, dataset="test")
    result = pub.publish(PID)
    assert result is not None and result.labels == {"train": 1, "test": 1}
    assert ls.config_reads == 1  # an annotation event: the config read a moment ago serves

    ls.config = build_label_config(choices=["cat", "dog", "bird"])
    state.note(full=True)  # what PROJECT_UPDATED records
    pub.publish(PID)
    assert ls.config_reads == 2

    monkeypatch.setattr(publisher_module, "CONFIG_RECHECK_SECONDS", 0.0)  # as if that time passed
    state.note(dirty=[1])
    pub.publish(PID)
    assert ls.config_reads == 3  # a lost PROJECT_UPDATED is seen within CONFIG_RECHECK_SECONDS


def test_a_publish_waits_for_a_burst_from_its_first_event_not_after_the_last_publish(
    world: tuple[Publisher, MemoryLabelStudio, ProjectState],
) -> None:
    pub, _, state = world
    pub.publish(PID)
    assert state.first_event_age() is None  # nothing pending
    pub.debounce = 0.6
    state.note(dirty=[1])
    age = state.first_event_age()
    assert age is not None and 0 <= age < 0.3
    started = time.monotonic()
    pub.publish(PID)
    assert time.monotonic() - started >= 0.45  # the burst's window, counted from its first event
    assert state.first_event_age() is None  # taken

    state.note(dirty=[2])
    time.sleep(0.7)  # the event already waited longer than the window (as during a long publish)
    started = time.monotonic()
    pub.publish(PID)
    assert time.monotonic() - started < 0.45


def test_a_publish_that_lost_its_lock_writes_nothing_and_keeps_its_events(
    world: tuple[Publisher, MemoryLabelStudio, ProjectState], monkeypatch: pytest.MonkeyPatch
) -> None:
    pub, ls, state = world
    monkeypatch.setattr(publisher_module, "publish_changes", lambda *a, **k: None)  # the whole write
    pub.publish(PID)
    key = pub.projects.key(pub.projects.find(PID), "train.manifest")  # type: ignore[arg-type]
    before = pub.storage.get_bytes(key)
    summarize = publisher_module.entries_summary

    def stalled_past_the_lock(*args: Any) -> Any:
        state.redis.set(state.k_lock, "another-host:2:0")  # the lock expired; another publisher took it
        return summarize(*args)

    monkeypatch.setattr(publisher_module, "entries_summary", stalled_past_the_lock)
    ls.tasks[1] = task("s3://b/1.jpg", choices("dog"), tid=1, dataset="train")
    state.note(dirty=[1])
    with pytest.raises(LockLost):
        pub.publish(PID)
    assert pub.storage.get_bytes(key) == before  # the manifest the other publisher owns is untouched
    assert state.redis.smembers(state.k_dirty) == {b"1"}  # the event waits for the next publish
    assert state.redis.get(state.k_lock) == b"another-host:2:0"
    state.redis.delete(state.k_lock)


def test_a_lock_lost_between_two_uploads_stops_before_the_next(
    world: tuple[Publisher, MemoryLabelStudio, ProjectState], monkeypatch: pytest.MonkeyPatch
) -> None:
    pub, ls, state = world
    monkeypatch.setattr(publisher_module, "publish_changes", lambda *a, **k: None)  # the whole write
    pub.publish(PID)
    info = pub.projects.find(PID)
    assert info is not None
    summary_key = pub.projects.key(info, "validation/manifest_summary.json")
    before = pub.storage.get_bytes(summary_key)
    put_file = pub.storage.put_file

    def upload_then_stall(*args: Any, **kwargs: Any) -> Any:
        done = put_file(*args, **kwargs)
        state.redis.set(state.k_lock, "another-host:2:0")  # stalled past the lock's life after this one
        return done

    monkeypatch.setattr(pub.storage, "put_file", upload_then_stall)
    ls.tasks[1] = task("s3://b/1.jpg", choices("dog"), tid=1, dataset="train")
    ls.tasks[2] = task("s3://b/2.jpg", choices("cat"), tid=2, dataset="test")
    state.note(dirty=[1, 2])
    with pytest.raises(LockLost):
        pub.publish(PID)
    assert pub.storage.get_bytes(summary_key) == before  # no write after the lock was lost
    assert state.status()["digests"] != {}  # and the published digests stay the previous holder's
    state.redis.delete(state.k_lock)


def changes_spy(monkeypatch: pytest.MonkeyPatch) -> list[set[int]]:
    """The tasks of each publish made by changes (from the kept state), in order."""
    by_changes: list[set[int]] = []
    real = publisher_module.publish_changes

    def spy(keep: Any, *, touched: set[int], **options: Any) -> Any:
        by_changes.append(set(touched))
        return real(keep, touched=touched, **options)

    monkeypatch.setattr(publisher_module, "publish_changes", spy)
    return by_changes


def test_a_change_to_an_image_with_duplicates_is_published_in_full(
    world: tuple[Publisher, MemoryLabelStudio, ProjectState], monkeypatch: pytest.MonkeyPatch
) -> None:
    pub, ls, state = world
    pub.publish(PID)
    by_changes = changes_spy(monkeypatch)
    ls.tasks[1] = task("s3://b/1.jpg", choices("dog"), tid=1, dataset="train")
    state.note(dirty=[1])
    pub.publish(PID)
    assert by_changes == [{1}]  # an image alone: by changes

    group = DuplicateGroup(("s3://b/1.jpg", "s3://b/2.jpg"), "near", ())
    record_groups(state.redis, ["s3://b/1.jpg", "s3://b/2.jpg"], [group], distance=pub.duplicate_distance)
    try:
        ls.tasks[1] = task("s3://b/1.jpg", choices("cat"), tid=1, dataset="train")
        state.note(dirty=[1])
        result = pub.publish(PID)
        assert by_changes == [{1}] and result is not None and result.labels == {"train": 1, "test": 0}
    finally:
        record_groups(state.redis, ["s3://b/1.jpg", "s3://b/2.jpg"], [], distance=pub.duplicate_distance)


def test_an_annotation_payload_is_published_by_changes(
    world: tuple[Publisher, MemoryLabelStudio, ProjectState], monkeypatch: pytest.MonkeyPatch
) -> None:
    pub, _, state = world
    pub.publish(PID)
    by_changes = changes_spy(monkeypatch)
    updated = task("s3://b/1.jpg", choices("dog"), tid=1, dataset="train")
    annotation = {**updated["annotations"][0], "updated_at": "2026-02-01T00:00:00.000000Z"}
    body = {**updated, "total_annotations": 1, "total_predictions": 0, "updated_at": annotation["updated_at"]}
    parts = payload_parts(annotation, body)
    assert parts is not None
    state.note(payloads={parts[0]: parts[1]})  # what ANNOTATION_UPDATED records: no task to read
    pub.publish(PID)
    assert by_changes == [{1}]
    info = pub.projects.find(PID)
    assert info is not None
    manifest = pub.storage.get_bytes(pub.projects.key(info, "train.manifest")) or b""
    assert b'"class-name":"dog"' in manifest and b'"class-name":"cat"' not in manifest


def payload_of(tid: int, label: str, stamp: str, config: str | None) -> dict[int, bytes]:
    """What ANNOTATION_UPDATED records for task ``tid`` (its project's label config ``config``, or none)."""
    updated = task(f"s3://b/{tid}.jpg", choices(label), tid=tid, dataset="train" if tid == 1 else "test")
    annotation = {**updated["annotations"][0], "updated_at": stamp}
    body = {**updated, "total_annotations": 1, "total_predictions": 0, "updated_at": stamp}
    project = {"id": PID, "label_config": config} if config is not None else None
    parts = payload_parts(annotation, body, project)
    assert parts is not None
    return {parts[0]: parts[1]}


def test_annotation_payloads_carrying_the_kept_config_need_no_read_of_it(
    world: tuple[Publisher, MemoryLabelStudio, ProjectState], monkeypatch: pytest.MonkeyPatch
) -> None:
    pub, ls, state = world
    pub.publish(PID)
    assert ls.config_reads == 1
    monkeypatch.setattr(publisher_module, "CONFIG_RECHECK_SECONDS", 0.0)  # the last read is old
    state.note(payloads=payload_of(1, "dog", "2026-02-01T00:00:00.000000Z", ls.config))
    assert pub.publish(PID) is not None
    assert ls.config_reads == 1  # the payload vouched for the config

    result = pub.publish(PID)  # a publish whose events another one took: nothing to read
    assert result is not None and not result.published and ls.config_reads == 1

    state.note(payloads=payload_of(1, "cat", "2026-02-02T00:00:00.000000Z", None))
    pub.publish(PID)
    assert ls.config_reads == 2  # a payload without the project: read as before

    ls.config = build_label_config(choices=["cat", "dog", "bird"])  # changed, its PROJECT_UPDATED lost
    ls.tasks[2] = task("s3://b/2.jpg", choices("bird"), tid=2, dataset="test")
    state.note(payloads=payload_of(2, "bird", "2026-02-03T00:00:00.000000Z", ls.config))
    result = pub.publish(PID)
    assert ls.config_reads == 3 and result is not None and result.rebuilt  # another config: read, rebuilt
    assert result.labels == {"train": 1, "test": 1}
