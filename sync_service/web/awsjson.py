"""The AWS JSON 1.1 protocol of the Rekognition-compatible endpoint, driven by botocore's service model.

Requests are checked against the operation's input shape from botocore's own
``rekognition/*/service-2.json`` (types, required members, lengths, ranges, patterns, enums) and
responses against its output shape, so member names and constraints are Rekognition's, never copied
by hand. Errors are rendered as AWS does: HTTP 400 (500 for faults, 503 for
``ServiceUnavailableException``), ``{"__type": ..., "Message": ...}`` and the ``x-amzn-ErrorType``
header, so that botocore raises the modeled exception class (and retries the 5xx ones).
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape

SERVICE = "rekognition"
CONTENT_TYPE = "application/x-amz-json-1.1"
SERVICE_UNAVAILABLE = "ServiceUnavailableException"
"""A part the service needs (Redis, S3, Label Studio) did not answer. Not in Rekognition's model (boto3
raises a plain ``ClientError`` with this code); the name and 503 are those of the AWS services that model
it, and botocore retries every 503 (``TransientRetryableChecker``; ``service_unavailable`` in legacy mode)."""
FAULTS = {"InternalServerError": 500, "ThrottlingException": 500, SERVICE_UNAVAILABLE: 503}
"""HTTP status of the server-side errors (APIREF); every other error is a client error, 400."""
SHOWN_VALUE_CHARS = 100  # a value quoted in a ValidationException is cut to this many characters


class AwsError(Exception):
    """An error answered in AWS JSON 1.1 form: ``type`` is the exception name botocore maps."""

    def __init__(self, type_: str, message: str) -> None:
        self.type = type_
        self.message = message
        super().__init__(f"{type_}: {message}")

    @property
    def status(self) -> int:
        """The HTTP status: 500 for Rekognition's faults, 503 when a part is away, 400 for client errors."""
        return FAULTS.get(self.type, 400)

    def body(self) -> dict[str, str]:
        """The JSON body (``__type`` and ``Message``)."""
        return {"__type": self.type, "Message": self.message}


@functools.cache
def service_model() -> ServiceModel:
    """Rekognition's service model as botocore ships it (loaded once)."""
    model: ServiceModel = botocore.session.get_session().get_service_model(SERVICE)
    return model


def operation(name: str) -> OperationModel:
    """The operation's model; :class:`AwsError` ``UnknownOperationException`` for a name not in it."""
    model = service_model()
    if name not in model.operation_names:
        raise AwsError("UnknownOperationException", f"Unknown operation {name!r}.")
    return model.operation_model(name)


def check_input(op: OperationModel, params: Any) -> dict[str, Any]:
    """The request's parameters checked against the input shape, blobs decoded from base64.

    Raises ``SerializationException`` for a value of the wrong type (or bad base64) and
    ``ValidationException`` listing every broken constraint. Unknown members are ignored, as AWS does.
    """
    if op.input_shape is None:
        return {}
    problems: list[str] = []
    checked = _check(op.input_shape, params, "", problems, inbound=True)
    if problems:
        count = len(problems)
        raise AwsError(
            "ValidationException",
            f"{count} validation error{'s' if count > 1 else ''} detected: {'; '.join(problems)}",
        )
    result: dict[str, Any] = checked
    return result


def output_problems(op: OperationModel, document: dict[str, Any]) -> list[str]:
    """What in a response breaks the output shape (empty when it conforms)."""
    if op.output_shape is None:
        return [] if not document else ["the operation has no output"]
    problems: list[str] = []
    try:
        _check(op.output_shape, document, "", problems, inbound=False)
    except AwsError as exc:
        problems.append(exc.message)
    return problems


def _member_path(path: str, name: str) -> str:
    # AWS names members in lower camel case in its messages ("maxResults", "datasets.1.member.arn").
    member = name[:1].lower() + name[1:]
    return f"{path}.{member}" if path else member


def _shown(value: Any) -> str:
    text = str(value)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[:SHOWN_VALUE_CHARS] + "..."


def _wrong_type(path: str, expected: str, value: Any) -> AwsError:
    return AwsError(
        "SerializationException",
        f"Expected {expected} at '{path or 'body'}', got {type(value).__name__}.",
    )


@functools.cache
def _pattern(pattern: str) -> re.Pattern[str] | None:
    # Java's patterns (\p{L}...) that Python's re cannot compile are not checked (only tag keys).
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _check(shape: Shape, value: Any, path: str, problems: list[str], *, inbound: bool) -> Any:
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        if not isinstance(value, dict):
            raise _wrong_type(path, "an object", value)
        out: dict[str, Any] = {}
        for name in shape.required_members:
            if value.get(name) is None:
                problems.append(
                    f"Value null at '{_member_path(path, name)}' failed to satisfy constraint: "
                    "Member must not be null"
                )
        members = shape.members
        for name, item in value.items():
            if name not in members:
                if not inbound:  # a response must hold only the model's members
                    problems.append(f"'{_member_path(path, name)}' is not a member of {shape.name}")
                continue
            if item is not None:
                out[name] = _check(members[name], item, _member_path(path, name), problems, inbound=inbound)
        return out
    if kind == "list":
        if not isinstance(value, list):
            raise _wrong_type(path, "a list", value)
        _length(meta, len(value), value, path, problems)
        return [
            _check(shape.member, item, f"{path}.{i}.member", problems, inbound=inbound)
            for i, item in enumerate(value, start=1)
        ]
    if kind == "map":
        if not isinstance(value, dict):
            raise _wrong_type(path, "a map", value)
        _length(meta, len(value), value, path, problems)
        return {
            _check(shape.key, k, f"{path}.key", problems, inbound=inbound): _check(
                shape.value, v, f"{path}.{k}", problems, inbound=inbound
            )
            for k, v in value.items()
        }
    if kind == "string":
        if not isinstance(value, str):
            raise _wrong_type(path, "a string", value)
        enum = meta.get("enum")
        if enum and value not in enum:
            problems.append(
                f"Value '{_shown(value)}' at '{path}' failed to satisfy constraint: "
                f"Member must satisfy enum value set: [{', '.join(enum)}]"
            )
        _length(meta, len(value), value, path, problems)
        pattern = _pattern(meta["pattern"]) if "pattern" in meta else None
        if pattern is not None and pattern.fullmatch(value) is None:
            problems.append(
                f"Value '{_shown(value)}' at '{path}' failed to satisfy constraint: "
                f"Member must satisfy regular expression pattern: {meta['pattern']}"
            )
        return value
    if kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise _wrong_type(path, "an integer", value)
        _range(meta, value, path, problems)
        return value
    if kind in ("float", "double"):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _wrong_type(path, "a number", value)
        _range(meta, value, path, problems)
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _wrong_type(path, "a boolean", value)
        return value
    if kind == "timestamp":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _wrong_type(path, "a Unix time", value)
        return value
    if kind == "blob":
        if inbound:
            if not isinstance(value, str):
                raise _wrong_type(path, "a base64 string", value)
            try:
                value = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise AwsError("SerializationException", f"'{path}' is not valid base64.") from None
        if not isinstance(value, bytes):
            raise _wrong_type(path, "bytes", value)
        _length(meta, len(value), None, path, problems)
        return value
    return value


def _length(meta: dict[str, Any], size: int, value: Any, path: str, problems: list[str]) -> None:
    shown = "" if value is None or not isinstance(value, str) else f" '{_shown(value)}'"
    where = f"Value{shown} at '{path}' failed to satisfy constraint: Member must have length"
    if "min" in meta and size < meta["min"]:
        problems.append(f"{where} greater than or equal to {meta['min']}")
    if "max" in meta and size > meta["max"]:
        problems.append(f"{where} less than or equal to {meta['max']}")


def _range(meta: dict[str, Any], value: float, path: str, problems: list[str]) -> None:
    where = f"Value '{value}' at '{path}' failed to satisfy constraint: Member must have value"
    if "min" in meta and value < meta["min"]:
        problems.append(f"{where} greater than or equal to {meta['min']}")
    if "max" in meta and value > meta["max"]:
        problems.append(f"{where} less than or equal to {meta['max']}")
