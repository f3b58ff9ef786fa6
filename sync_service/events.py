"""Label Studio webhook payloads: their schema, and the hint each one gives.

A payload is only a hint ("task 42 changed"): jobs read the current state from Label Studio. So only
the ids are read here, and the rest of the payload (which carries the project's token) is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

HANDLED = frozenset(
    {
        "TASKS_CREATED",
        "TASKS_DELETED",
        "ANNOTATION_CREATED",
        "ANNOTATIONS_CREATED",
        "ANNOTATION_UPDATED",
        "ANNOTATIONS_DELETED",
        "PROJECT_UPDATED",
        "PROJECT_DELETED",
    }
)
_ID = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
MAX_IDS = 100_000


class _Ref(Schema):
    class Meta:
        unknown = EXCLUDE

    id = _ID


class _IdOrIds(fields.Field):  # type: ignore[type-arg]
    """An object with an id, or a list of them (ANNOTATIONS_CREATED sends lists under singular keys)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[int]:
        items = value if isinstance(value, list) else [value]
        if len(items) > MAX_IDS:
            raise ValidationError(f"more than {MAX_IDS} items")
        loaded = _Ref(many=True).load(items)
        return [item["id"] for item in loaded]


class PayloadSchema(Schema):
    """The parts of a webhook body we read; other keys are ignored (and never stored or logged)."""

    class Meta:
        unknown = EXCLUDE

    action = fields.String(required=True, validate=validate.Length(min=1, max=64))
    project = fields.Nested(_Ref, required=True)
    tasks = fields.List(fields.Nested(_Ref), validate=validate.Length(max=MAX_IDS))
    task = _IdOrIds()
    annotation = _IdOrIds()
    annotations = fields.List(fields.Nested(_Ref), validate=validate.Length(max=MAX_IDS))

    @validates_schema
    def _fields_for_action(self, data: dict[str, Any], **kwargs: Any) -> None:
        needs = {
            "TASKS_CREATED": "tasks",
            "TASKS_DELETED": "tasks",
            "ANNOTATION_CREATED": "task",
            "ANNOTATION_UPDATED": "task",
            "ANNOTATIONS_CREATED": "task",
            "ANNOTATIONS_DELETED": "annotations",
        }.get(data.get("action", ""))
        if needs and needs not in data:
            raise ValidationError(f"required for {data['action']}", field_name=needs)


@dataclass(slots=True)
class Hint:
    """What an event says changed in one project."""

    project_id: int
    action: str
    dirty: list[int] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)
    gone_annotations: list[int] = field(default_factory=list)
    full: bool = False
    project_deleted: bool = False

    @property
    def handled(self) -> bool:
        """Whether the action is one we act on (others are acknowledged and ignored)."""
        return self.action in HANDLED


_SCHEMA = PayloadSchema()


def parse_payload(body: Any) -> Hint:
    """Validate a decoded webhook body; raise marshmallow's ValidationError naming the bad field."""
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object")
    data = _SCHEMA.load(body)
    hint = Hint(project_id=data["project"]["id"], action=data["action"])
    action = hint.action
    if action == "TASKS_CREATED":
        hint.dirty = [t["id"] for t in data["tasks"]]
    elif action == "TASKS_DELETED":
        hint.gone = [t["id"] for t in data["tasks"]]
    elif action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"):
        hint.dirty = list(data["task"])
    elif action == "ANNOTATIONS_DELETED":
        hint.gone_annotations = [a["id"] for a in data["annotations"]]
    elif action == "PROJECT_UPDATED":
        hint.full = True  # the label config may have changed: every line may change
    elif action == "PROJECT_DELETED":
        hint.project_deleted = True
    return hint
