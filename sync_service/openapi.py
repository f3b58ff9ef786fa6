"""The REST API described by OpenAPI 3, served at ``GET /api/v1/openapi.json``.

Built with apispec from the same marshmallow schema the webhook validates with, so the description
cannot drift from what the service accepts.
"""

from __future__ import annotations

import functools
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, jsonify

from sync_service.config import SECRET_HEADER
from sync_service.events import PayloadSchema

bp = Blueprint("openapi", __name__)

_ERROR = {
    "description": "error",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_PROJECT_ID = {
    "name": "project_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}


@functools.cache
def spec() -> dict[str, Any]:
    """The OpenAPI document (built once)."""
    api = APISpec(
        title="label-studio-custom-labels sync service",
        version="1",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "Webhooks from Label Studio, project status and resync."},
    )
    api.components.schema("WebhookPayload", schema=PayloadSchema)
    api.components.schema(
        "Error",
        {"type": "object", "properties": {"error": {"type": "string"}, "message": {"type": "string"}}},
    )
    api.components.security_scheme("webhookSecret", {"type": "apiKey", "in": "header", "name": SECRET_HEADER})
    api.path(
        path="/webhooks/label-studio",
        operations={
            "post": {
                "summary": "Take a Label Studio webhook (a hint; the worker reads the current state)",
                "security": [{"webhookSecret": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/WebhookPayload"}}
                    },
                },
                "responses": {
                    "202": {"description": "queued or ignored"},
                    "400": _ERROR,
                    "401": _ERROR,
                    "413": _ERROR,
                },
            }
        },
    )
    api.path(
        path="/api/v1/projects/{project_id}/status",
        operations={
            "get": {
                "summary": "Last publish, entries and labels per dataset, pending events, last error",
                "parameters": [_PROJECT_ID],
                "responses": {"200": {"description": "the status"}, "404": _ERROR},
            }
        },
    )
    api.path(
        path="/api/v1/projects/{project_id}/resync",
        operations={
            "post": {
                "summary": "Rebuild the project's manifests from Label Studio, correcting any drift",
                "parameters": [_PROJECT_ID],
                "responses": {"202": {"description": "queued"}, "404": _ERROR},
            }
        },
    )
    api.path(
        path="/healthz",
        operations={"get": {"summary": "The process is up", "responses": {"200": {"description": "up"}}}},
    )
    api.path(
        path="/readyz",
        operations={
            "get": {
                "summary": "Redis, S3 and Label Studio answer",
                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
            }
        },
    )
    document: dict[str, Any] = api.to_dict()
    return document


@bp.get("/api/v1/openapi.json")
def openapi() -> Any:
    """The OpenAPI document of this API."""
    return jsonify(spec())
