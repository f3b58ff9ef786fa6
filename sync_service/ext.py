"""What the blueprints need from the app: settings, Redis and the queue, set up by ``create_app``."""

from __future__ import annotations

from typing import Any

from flask import current_app
from redis import Redis
from rq import Queue

from sync_service.config import Settings


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
