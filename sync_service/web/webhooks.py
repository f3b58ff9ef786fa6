"""``POST /webhooks/label-studio``: answer Label Studio in milliseconds, queue the work.

Label Studio waits for this answer (1 s timeout) inside the annotator's request and never retries, so
the view only checks the secret, validates the ids it needs and records them in Redis; a publish job
is queued once per burst of events (the ``scheduled`` flag), not once per event.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from flask import Blueprint, Response, jsonify, request
from marshmallow import ValidationError

from sync_service.config import SECRET_HEADER
from sync_service.domain.events import parse_payload
from sync_service.edges.state import ProjectState
from sync_service.jobs.publish import enqueue_publish, forget_project_job
from sync_service.web import ext

bp = Blueprint("webhooks", __name__)


def _error(status: int, message: str, **extra: Any) -> Any:
    return jsonify(error=message, **extra), status


def _accepted(status: str, action: str) -> Response:
    # What jsonify would answer, without its per-call overhead (this is the hot path).
    return Response(
        orjson.dumps({"action": action, "status": status}) + b"\n", 202, mimetype="application/json"
    )


@bp.post("/webhooks/label-studio")
def receive() -> Any:
    """Take one Label Studio webhook: 401 without the secret, 400 for a bad body, else 202 (503 when
    Redis is away: see ``app``)."""
    given = request.headers.get(SECRET_HEADER, "").encode()
    if not hmac.compare_digest(given, ext.settings().webhook_secret.encode()):
        return _error(401, f"missing or wrong {SECRET_HEADER} header")
    body = request.get_data(cache=False)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return _error(400, f"the body is not valid JSON: {exc}")
    try:
        hint = parse_payload(payload)
    except ValidationError as exc:
        if isinstance(exc.messages, dict):  # per field
            return _error(400, "the payload does not match the webhook schema", fields=exc.messages)
        return _error(400, f"the payload does not match the webhook schema: {'; '.join(exc.messages)}")
    if not hint.handled:
        return _accepted("ignored", hint.action)
    if hint.project_deleted:
        ext.queue().enqueue(forget_project_job, hint.project_id)
        return _accepted("queued", hint.action)
    state = ProjectState(ext.redis(), hint.project_id)
    if state.note(
        dirty=hint.dirty,
        gone=hint.gone,
        gone_annotations=hint.gone_annotations,
        full=hint.full,
        payloads=hint.payloads,
    ):
        enqueue_publish(ext.queue(), hint.project_id)
    return _accepted("queued", hint.action)
