"""Webhook payloads: the schema and the hint each action gives."""

from __future__ import annotations

import pytest
from marshmallow import ValidationError

from sync_service.domain.events import parse_payload

PROJECT = {"id": 7, "title": "x", "token": "secret-token", "label_config": "<View/>"}


def test_annotation_events_mark_their_task() -> None:
    for action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED"):
        hint = parse_payload(
            {"action": action, "project": PROJECT, "task": {"id": 42}, "annotation": {"id": 9}}
        )
        assert (hint.project_id, hint.dirty, hint.handled) == (7, [42], True)


def test_annotations_created_carries_lists_under_singular_keys() -> None:
    hint = parse_payload(
        {
            "action": "ANNOTATIONS_CREATED",
            "project": PROJECT,
            "task": [{"id": 1}, {"id": 2}],
            "annotation": [{"id": 5}],
        }
    )
    assert hint.dirty == [1, 2]


def test_deletions_carry_only_ids() -> None:
    hint = parse_payload({"action": "TASKS_DELETED", "project": PROJECT, "tasks": [{"id": 3}, {"id": 4}]})
    assert hint.gone == [3, 4] and not hint.dirty
    hint = parse_payload({"action": "ANNOTATIONS_DELETED", "project": PROJECT, "annotations": [{"id": 8}]})
    assert hint.gone_annotations == [8]


def test_project_updated_asks_for_a_full_rebuild() -> None:
    assert parse_payload({"action": "PROJECT_UPDATED", "project": PROJECT}).full


def test_other_actions_are_acknowledged_not_handled() -> None:
    hint = parse_payload({"action": "LABEL_LINK_CREATED", "project": PROJECT})
    assert not hint.handled


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"project": PROJECT}, "action"),
        ({"action": "TASKS_CREATED"}, "project"),
        ({"action": "TASKS_CREATED", "project": {"id": "7"}}, "project"),
        ({"action": "TASKS_CREATED", "project": PROJECT}, "tasks"),
        ({"action": "TASKS_CREATED", "project": PROJECT, "tasks": [{"id": -1}]}, "tasks"),
        ({"action": "ANNOTATION_CREATED", "project": PROJECT}, "task"),
        ({"action": "ANNOTATIONS_DELETED", "project": PROJECT, "annotations": "8"}, "annotations"),
    ],
)
def test_a_payload_that_fails_the_schema_names_the_field(body: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_payload(body)
    assert field in info.value.messages_dict
