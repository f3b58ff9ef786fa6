"""``/healthz`` (the process is up) and ``/readyz`` (Redis, S3 and Label Studio answer)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify
from redis.exceptions import RedisError

from sync_service.edges.labelstudio import reachable
from sync_service.edges.s3 import Storage, client_for
from sync_service.web import ext

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Any:
    """Always 200 while the process serves requests."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz() -> Any:
    """200 when Redis, S3 and Label Studio all answer; 503 naming the ones that do not."""
    settings = ext.settings()
    checks: dict[str, bool] = {}
    try:
        checks["redis"] = bool(ext.redis().ping())
    except RedisError:
        checks["redis"] = False
    checks["s3"] = Storage(client_for(settings), settings.bucket).reachable()
    checks["label_studio"] = reachable(settings.ls_url)
    ready = all(checks.values())
    return jsonify(status="ready" if ready else "not ready", checks=checks), 200 if ready else 503
