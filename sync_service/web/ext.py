"""What the blueprints need from the app: settings, Redis and the queue, set up by ``create_app``."""

from __future__ import annotations

import threading
from typing import Any

from flask import current_app
from redis import Redis
from rq import Queue

from sync_service.config import Settings
from sync_service.domain.context import Context, make_context

_CONTEXT_LOCK = threading.Lock()


def _ext() -> dict[str, Any]:
    ext: dict[str, Any] = current_app.extensions["customlabels"]
    return ext


def settings() -> Settings:
    """The app's settings."""
    value: Settings = _ext()["settings"]
    return value


def redis() -> Redis:
    """The app's Redis connection."""
    value: Redis = _ext()["redis"]
    return value


def queue() -> Queue:
    """The app's RQ queue."""
    value: Queue = _ext()["queue"]
    return value


def context() -> Context:
    """The app's connections for the dataset operations (its Redis, S3, Label Studio), made on first use."""
    ext = _ext()
    with _CONTEXT_LOCK:
        if "context" not in ext:
            ext["context"] = make_context(ext["settings"], redis=ext["redis"])
    value: Context = ext["context"]
    return value
