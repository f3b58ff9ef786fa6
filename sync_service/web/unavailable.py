"""What the service answers when a part it needs (Redis, S3, Label Studio) does not answer: 503."""

from __future__ import annotations

from flask import Flask, Response, jsonify, request
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sync_service.errors import LabelStudioError, StorageError

RETRY_AFTER_SECONDS = 5
"""What a 503 tells the caller to wait before trying again (``Retry-After``), seconds."""
UNAVAILABLE: dict[type[Exception], str] = {
    RedisConnectionError: "Redis",  # AuthenticationError and BusyLoadingError included
    RedisTimeoutError: "Redis",
    StorageError: "S3",
    LabelStudioError: "Label Studio",
}
"""Exceptions that mean a part the service needs did not answer, and the part's name."""


def unavailable(app: Flask, part: str, exc: Exception) -> Response:
    """503 with Retry-After, and one log line: the route, the part and the exception's class only (its
    text may quote a bucket key or a host; a Redis URL's password never reaches it, but say less)."""
    app.logger.warning(
        "%s %s: %s is unavailable (%s); answered 503", request.method, request.path, part, type(exc).__name__
    )
    response = jsonify(error="Service Unavailable", message=f"{part} is unavailable; try again later")
    response.status_code = 503
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
