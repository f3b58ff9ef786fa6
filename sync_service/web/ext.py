"""What the blueprints need from the app: settings, Redis and the queue, set up by ``create_app``."""

from __future__ import annotations

import threading
from typing import Any

from flask import current_app
from redis import Redis
from rq import Queue

from sync_service.config import Settings
from sync_service.domain.context import Context
from sync_service.domain.projects import Projects
from sync_service.edges.labelstudio import LabelStudio
from sync_service.edges.s3 import Storage, client_for

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
            settings, connection = ext["settings"], ext["redis"]
            storage = Storage(client_for(settings), settings.bucket)
            ext["context"] = Context(
                settings=settings,
                redis=connection,
                storage=storage,
                ls=LabelStudio(
                    settings.ls_url,
                    settings.ls_api_key,
                    export_concurrency=settings.ls_export_concurrency,
                ),
                projects=Projects(connection, storage, settings.prefix),
            )
    value: Context = ext["context"]
    return value
