"""The REST API (``/api/v1``): project status and resync."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify

from sync_service.domain.projects import Projects
from sync_service.edges.s3 import Storage, client_for
from sync_service.edges.state import ProjectState
from sync_service.jobs.publish import JOB_TIMEOUT, RETRY, reconcile_job
from sync_service.web import ext

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def _projects() -> Projects:
    settings = ext.settings()
    return Projects(ext.redis(), Storage(client_for(settings), settings.bucket), settings.prefix)


@bp.get("/projects/<int:project_id>/status")
def status(project_id: int) -> Any:
    """Last publish time, entries and labels per dataset, pending events and the last error."""
    info = _projects().find(project_id)
    if info is None:
        abort(404, description=f"project {project_id} is not a customlabels project")
    state = ProjectState(ext.redis(), project_id).status()
    for internal in ("last_publish_monotonic_wall", "digests"):  # the publisher's bookkeeping, not status
        state.pop(internal, None)
    return jsonify(project=project_id, title=info.title, slug=info.slug, **state)


@bp.post("/projects/<int:project_id>/resync")
def resync(project_id: int) -> Any:
    """Queue a full rebuild from Label Studio that corrects any drift in S3; 202 with the job id."""
    if _projects().find(project_id) is None:
        abort(404, description=f"project {project_id} is not a customlabels project")
    job = ext.queue().enqueue(
        reconcile_job, project_id, retry=RETRY, job_timeout=JOB_TIMEOUT, description=f"resync {project_id}"
    )
    return jsonify(status="queued", job=job.id), 202
