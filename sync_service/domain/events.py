"""Label Studio webhook payloads: their schema, and the hint each one gives.

Most payloads are hints ("task 42 changed", "annotation 7 was deleted"): jobs read what they name from
Label Studio. ANNOTATION_CREATED and ANNOTATION_UPDATED carry the whole annotation and its task: the
parts a publish needs are kept (:func:`sync_service.domain.taskcache.payload_parts`) so that it reads
nothing; of the project only its label config's digest is kept (the rest, with its token, is dropped).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates_schema

from sync_service.domain.taskcache import payload_parts

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
MAX_ID = 2**63 - 1
"""The largest id Label Studio can hand out (its ids are PostgreSQL/SQLite 64-bit signed integers)."""
_ID = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=MAX_ID))
MAX_IDS = 100_000
NEEDS = {  # the key each action must carry
    "TASKS_CREATED": "tasks",
    "TASKS_DELETED": "tasks",
    "ANNOTATION_CREATED": "task",
    "ANNOTATION_UPDATED": "task",
    "ANNOTATIONS_CREATED": "task",
    "ANNOTATIONS_DELETED": "annotations",
}


class ObjectRef(Schema):
    """``{"id": n}``: how a payload names a project, task or annotation (other keys are ignored)."""

    class Meta:
        unknown = EXCLUDE

    id = _ID


_REF_JSON: dict[str, Any] = {  # ObjectRef in JSON Schema, for the OpenAPI description of _IdOrIds
    "type": "object",
    "properties": {"id": {"type": "integer", "minimum": 1, "maximum": MAX_ID}},
    "required": ["id"],
}


class _IdOrIds(fields.Field):  # type: ignore[type-arg]
    """An object with an id, or a list of them (ANNOTATIONS_CREATED sends lists under singular keys)."""

    def __init__(self) -> None:
        super().__init__(
            metadata={"oneOf": [_REF_JSON, {"type": "array", "maxItems": MAX_IDS, "items": _REF_JSON}]}
        )

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[int]:
        items = value if isinstance(value, list) else [value]
        if len(items) > MAX_IDS:
            raise ValidationError(f"more than {MAX_IDS} items")
        loaded = ObjectRef(many=True).load(items)
        return [item["id"] for item in loaded]


class PayloadSchema(Schema):
    """The parts of a webhook body we read; other keys are ignored (and never stored or logged)."""

    class Meta:
        unknown = EXCLUDE

    action = fields.String(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={  # for the OpenAPI document: the actions acted on, and that any other is taken too
            "description": "Label Studio's event; actions other than these are acknowledged and ignored",
            "anyOf": [{"enum": sorted(HANDLED)}, {"not": {"enum": sorted(HANDLED)}}],
        },
    )
    project = fields.Nested(ObjectRef, required=True)
    tasks = fields.List(fields.Nested(ObjectRef), validate=validate.Length(max=MAX_IDS))
    task = _IdOrIds()
    annotation = _IdOrIds()
    annotations = fields.List(fields.Nested(ObjectRef), validate=validate.Length(max=MAX_IDS))

    @validates_schema
    def _fields_for_action(self, data: dict[str, Any], **kwargs: Any) -> None:
        needs = NEEDS.get(data.get("action", ""))
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
    payloads: dict[int, bytes] = field(default_factory=dict)
    """Annotation id -> the parts of its payload a publish needs (``<updated_at>\\n<json>``)."""

    @property
    def handled(self) -> bool:
        """Whether the action is one we act on (others are acknowledged and ignored)."""
        return self.action in HANDLED


_SCHEMA = PayloadSchema()


def _ref_ids(items: Any) -> list[int] | None:
    """The ids of a list of ``{"id": n}`` objects, or None unless every one is plainly valid."""
    if type(items) is not list or len(items) > MAX_IDS:
        return None
    ids = []
    for item in items:
        value = item.get("id") if type(item) is dict else None
        if type(value) is not int or not 1 <= value <= MAX_ID:
            return None
        ids.append(value)
    return ids


def _fast_load(body: dict[str, Any]) -> dict[str, Any] | None:
    """What ``_SCHEMA.load(body)`` returns, for the bodies Label Studio sends; None for anything else.

    The schema costs more than the rest of the webhook request together, so the common shapes are
    checked by hand: plain ints >= 1, lists, dicts, the key the action needs. Any doubt (a bool id,
    a null, a missing key...) returns None and the schema decides, with its error messages.
    """
    action = body.get("action")
    project = body.get("project")
    if type(action) is not str or not 1 <= len(action) <= 64 or type(project) is not dict:
        return None
    project_id = project.get("id")
    if type(project_id) is not int or not 1 <= project_id <= MAX_ID:
        return None
    data: dict[str, Any] = {"action": action, "project": {"id": project_id}}
    for key in ("tasks", "annotations"):
        if key in body:
            ids = _ref_ids(body[key])
            if ids is None:
                return None
            data[key] = [{"id": i} for i in ids]
    for key in ("task", "annotation"):
        if key in body:
            value = body[key]
            ids = _ref_ids(value if type(value) is list else [value])
            if ids is None:
                return None
            data[key] = ids
    needs = NEEDS.get(action)
    if needs and needs not in data:
        return None
    return data


def parse_payload(body: Any) -> Hint:
    """Validate a decoded webhook body; raise marshmallow's ValidationError naming the bad field."""
    if not isinstance(body, dict):
        raise ValidationError("the body must be a JSON object")
    data = _fast_load(body)
    if data is None:
        data = _SCHEMA.load(body)
    hint = Hint(project_id=data["project"]["id"], action=data["action"])
    action = hint.action
    if action == "TASKS_CREATED":
        hint.dirty = [t["id"] for t in data["tasks"]]
    elif action == "TASKS_DELETED":
        hint.gone = [t["id"] for t in data["tasks"]]
    elif action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"):
        parts = (
            payload_parts(body.get("annotation"), body.get("task"), body.get("project"))
            if action != "ANNOTATIONS_CREATED"
            else None
        )
        if parts is not None:
            hint.payloads[parts[0]] = parts[1]
        else:  # ids only (or a shape we do not know): the task is read from Label Studio
            hint.dirty = list(data["task"])
    elif action == "ANNOTATIONS_DELETED":
        hint.gone_annotations = [a["id"] for a in data["annotations"]]
    elif action == "PROJECT_UPDATED":
        hint.full = True  # the label config may have changed: every line may change
    elif action == "PROJECT_DELETED":
        hint.project_deleted = True
    return hint
