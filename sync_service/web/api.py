"""The REST API (``/api/v1``): project status and resync, for a bearer token (see :mod:`.auth`).

Without a token: 401 with ``WWW-Authenticate``. A project the token's person may not see in Label
Studio answers the same 404 as a project that does not exist, so that the answer reveals nothing.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, g, jsonify

from sync_service.domain.projects import ProjectInfo, Projects
from sync_service.edges.s3 import Storage, client_for
from sync_service.edges.state import ProjectState
from sync_service.errors import SignInRefused
from sync_service.jobs.publish import JOB_TIMEOUT, RETRY, reconcile_job
from sync_service.web import auth, ext
from sync_service.web.once import enqueue_once

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.before_request
def _authenticate() -> Any:
    try:
        principal = auth.bearer()
    except SignInRefused as exc:
        return auth.unauthorized(str(exc))
    if principal is None:
        return auth.unauthorized(
            "send Authorization: Bearer <your Label Studio token, or the service API key>"
        )
    g.principal = principal
    return None


@bp.errorhandler(SignInRefused)
def _refused(exc: SignInRefused) -> Any:
    return auth.unauthorized(str(exc))


def _projects() -> Projects:
    settings = ext.settings()
    return Projects(ext.redis(), Storage(client_for(settings), settings.bucket), settings.prefix)


def _project(project_id: int) -> ProjectInfo:
    """The project, if it is ours and the caller may see it in Label Studio; else 404 (the same 404)."""
    principal: auth.Principal = g.principal
    info = _projects().find(project_id) if principal.can_see(project_id) else None
    if info is None:
        abort(404, description=f"project {project_id} is not a customlabels project")
    return info


@bp.get("/projects/<int:project_id>/status")
def status(project_id: int) -> Any:
    """Last publish time, entries and labels per dataset, pending events and the last error."""
    info = _project(project_id)
    state = ProjectState(ext.redis(), project_id).status()
    for internal in ("last_publish_monotonic_wall", "digests"):  # the publisher's bookkeeping, not status
        state.pop(internal, None)
    return jsonify(project=project_id, title=info.title, slug=info.slug, **state)


@bp.post("/projects/<int:project_id>/resync")
def resync(project_id: int) -> Any:
    """Queue a full rebuild from Label Studio that corrects any drift in S3: 202 with the job id, or 200
    with the job already waiting (one resync of a project waits in the queue at a time)."""
    _project(project_id)
    queued = enqueue_once(
        ext.queue(), project_id, "resync", reconcile_job, project_id,
        who=g.principal, retry=RETRY, job_timeout=JOB_TIMEOUT, description=f"resync {project_id}",
    )  # fmt: skip
    if not queued.new:
        return jsonify(status="already queued", job=queued.job_id), 200
    return jsonify(status="queued", job=queued.job_id), 202
