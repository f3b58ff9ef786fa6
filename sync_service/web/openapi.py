"""The service's HTTP API described by OpenAPI 3, served at ``GET /api/v1/openapi.json``.

Built with apispec from the same marshmallow schema the webhook validates with, so the description
cannot drift from what the service accepts. Every route but the console (HTML for people) is here,
with every status it answers: ``tests/hostile/test_openapi_schemathesis.py`` holds the app to it.
"""

from __future__ import annotations

import functools
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, jsonify

from sync_service.config import SECRET_HEADER
from sync_service.domain.events import MAX_ID, NEEDS, ObjectRef, PayloadSchema
from sync_service.web.awsjson import CONTENT_TYPE as AWS_JSON
from sync_service.web.rekognition import HANDLERS as REKOGNITION_OPERATIONS
from sync_service.web.unavailable import RETRY_AFTER_SECONDS

bp = Blueprint("openapi", __name__)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}, **extra}


_RETRY_AFTER = {
    "Retry-After": {
        "description": f"seconds to wait before trying again ({RETRY_AFTER_SECONDS})",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}
_UNAVAILABLE = _json(
    "Redis, S3 or Label Studio did not answer: nothing was done, try again after Retry-After seconds",
    "Error",
    headers=_RETRY_AFTER,
)
_NOT_OURS = _json("not a customlabels project, or not one Label Studio lets the caller see", "Error")
_UNAUTHORIZED = _json(
    "no bearer token, or one Label Studio refuses (WWW-Authenticate says how to authenticate)", "Error"
)
_PROJECT_ID = {
    "name": "project_id",
    "in": "path",
    "required": True,
    "description": "the Label Studio project id",
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
}
_SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "message": {"type": "string"},
            "fields": {"type": "object", "description": "the webhook fields that failed the schema"},
        },
        "required": ["error"],
    },
    "WebhookAccepted": {
        "type": "object",
        "properties": {
            "action": {"type": "string"},
            "status": {"type": "string", "enum": ["queued", "ignored"]},
        },
        "required": ["action", "status"],
    },
    "ProjectStatus": {
        "type": "object",
        "properties": {
            "project": {"type": "integer"},
            "title": {"type": "string"},
            "slug": {"type": "string"},
        },
        "required": ["project", "title", "slug"],
        "additionalProperties": True,
    },
    "Queued": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["queued", "already queued"]},
            "job": {"type": "string"},
        },
        "required": ["status", "job"],
    },
    "Health": {
        "type": "object",
        "properties": {"status": {"type": "string", "enum": ["ok"]}},
        "required": ["status"],
    },
    "Readiness": {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ready", "not ready"]},
            "checks": {
                "type": "object",
                "properties": {name: {"type": "boolean"} for name in ("redis", "s3", "label_studio")},
                "required": ["redis", "s3", "label_studio"],
            },
        },
        "required": ["status", "checks"],
    },
    "AwsError": {
        "type": "object",
        "properties": {"__type": {"type": "string"}, "Message": {"type": "string"}},
        "required": ["__type", "Message"],
    },
}


def _required_for_action() -> dict[str, Any]:
    """The payload's rule that an action carries its key (``TASKS_CREATED`` needs ``tasks``...): any
    other action, or one of these with its key."""
    by_key: dict[str, list[str]] = {}
    for action, key in sorted(NEEDS.items()):
        by_key.setdefault(key, []).append(action)
    return {
        "anyOf": [
            {"properties": {"action": {"not": {"enum": sorted(NEEDS)}}}},
            *(
                {"properties": {"action": {"enum": actions}}, "required": [key]}
                for key, actions in sorted(by_key.items())
            ),
        ]
    }


def _project_operation(summary: str, answers: dict[str, Any]) -> dict[str, Any]:
    """An operation on one project of ours, for a bearer token: its id in the path, ``answers`` when it
    is done, 401 without a token Label Studio accepts, 404 for any other id (or a project the caller
    may not see), 503 when a part is away."""
    return {
        "summary": summary,
        "parameters": [_PROJECT_ID],
        "security": [{"bearer": []}],
        "responses": {**answers, "401": _UNAUTHORIZED, "404": _NOT_OURS, "503": _UNAVAILABLE},
    }


def _rekognition_operation() -> dict[str, Any]:
    """``POST /``: AWS JSON 1.1 in and out, any operation of :data:`REKOGNITION_OPERATIONS`."""
    aws_object = {AWS_JSON: {"schema": {"type": "object"}}}
    aws_error = {AWS_JSON: {"schema": _ref("AwsError")}}
    return {
        "summary": "The Rekognition-compatible endpoint (AWS JSON 1.1)",
        "description": (
            "Requests are signed with AWS Signature Version 4 (service `rekognition`) with the key "
            "pair CUSTOMLABELS_API_ACCESS_KEY_ID / CUSTOMLABELS_API_SECRET_ACCESS_KEY; input and "
            "output shapes are Rekognition's (botocore's service model). Errors are AWS's: "
            "`__type` names the exception class, `x-amzn-ErrorType` repeats it."
        ),
        "parameters": [
            {
                "name": "X-Amz-Target",
                "in": "header",
                "required": True,
                "schema": {
                    "type": "string",
                    "enum": [f"RekognitionService.{name}" for name in sorted(REKOGNITION_OPERATIONS)],
                },
            }
        ],
        "requestBody": {"required": True, "content": aws_object},
        "responses": {
            "200": {"description": "the operation's output", "content": aws_object},
            "400": {
                "description": "a client error (AccessDeniedException if unsigned)",
                "content": aws_error,
            },
            "503": {
                "description": (
                    "ServiceUnavailableException: Redis, S3 or Label Studio did not answer; "
                    "try again after Retry-After seconds"
                ),
                "content": aws_error,
                "headers": {
                    **_RETRY_AFTER,
                    "x-amz-retry-after": {
                        "description": "the same wait in milliseconds (botocore's retry reads it)",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 1000},
                    },
                },
            },
        },
    }


def _operations() -> dict[str, dict[str, Any]]:
    """Every path of the API and its operations, in the document's order."""
    return {
        "/webhooks/label-studio": {
            "post": {
                "summary": "Take a Label Studio webhook (a hint; the worker reads the current state)",
                "security": [{"webhookSecret": []}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("WebhookPayload")}},
                },
                "responses": {
                    "202": _json(
                        "queued, or ignored (an action the service does not act on)", "WebhookAccepted"
                    ),
                    "400": _json("the body is not JSON or fails the schema (nothing recorded)", "Error"),
                    "401": _json(f"{SECRET_HEADER} missing or wrong (nothing recorded)", "Error"),
                    "413": _json("the body is larger than CUSTOMLABELS_MAX_WEBHOOK_BYTES", "Error"),
                    "503": _UNAVAILABLE,
                },
            }
        },
        "/api/v1/projects/{project_id}/status": {
            "get": _project_operation(
                "Last publish, entries and labels per dataset, pending events, last error",
                {"200": _json("the status", "ProjectStatus")},
            )
        },
        "/api/v1/projects/{project_id}/resync": {
            "post": _project_operation(
                "Rebuild the project's manifests from Label Studio, correcting any drift",
                {"202": _json("queued", "Queued"), "200": _json("one is already queued", "Queued")},
            )
        },
        "/api/v1/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "the OpenAPI document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
        "/healthz": {"get": {"summary": "The process is up", "responses": {"200": _json("up", "Health")}}},
        "/readyz": {
            "get": {
                "summary": "Redis, S3 and Label Studio answer",
                "responses": {
                    "200": _json("ready", "Readiness"),
                    "503": _json("not ready: checks names what does not answer", "Readiness"),
                },
            }
        },
        "/": {"post": _rekognition_operation()},
    }


@functools.cache
def spec() -> dict[str, Any]:
    """The OpenAPI document (built once)."""
    api = APISpec(
        title="label-studio-custom-labels sync service",
        version="1",
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={
            "description": "Webhooks from Label Studio, project status and resync, health, and the "
            "Rekognition-compatible endpoint."
        },
    )
    api.components.schema("ObjectRef", schema=ObjectRef)
    api.components.schema("WebhookPayload", schema=PayloadSchema)
    for name, schema in _SCHEMAS.items():
        api.components.schema(name, schema)
    api.components.security_scheme("webhookSecret", {"type": "apiKey", "in": "header", "name": SECRET_HEADER})
    api.components.security_scheme(
        "bearer",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "your Label Studio token (legacy or personal access token), or the service "
            "API key (CUSTOMLABELS_SERVICE_API_KEY)",
        },
    )
    for path, operations in _operations().items():
        api.path(path=path, operations=operations)
    document: dict[str, Any] = api.to_dict()
    document["components"]["schemas"]["WebhookPayload"].update(_required_for_action())
    return document


@bp.get("/api/v1/openapi.json")
def openapi() -> Any:
    """The OpenAPI document of this API."""
    return jsonify(spec())
