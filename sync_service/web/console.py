"""The dataset console: a server-rendered page per project, in the spirit of Rekognition's dataset page.

Training and test datasets with their stats, the labels with entry and box counts, the entries with
validation errors and their codes, the sync status, and actions (create a dataset from S3, a manifest or
another dataset; distribute; snapshot; resync) queued as jobs. No JavaScript build: plain HTML forms.
Actions carry a form token derived from the service's secret, so a page elsewhere cannot post them.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from typing import Any
from urllib.parse import urlencode

import orjson
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job

from sync_service.domain.bootstrap import label_studio
from sync_service.domain.context import Context, make_context
from sync_service.domain.datasets import DATASETS, Datasets, invalid
from sync_service.domain.projects import ProjectInfo
from sync_service.domain.tabs import TABS, tab_ids
from sync_service.edges.state import ProjectState
from sync_service.errors import LabelStudioError
from sync_service.jobs.publish import JOB_TIMEOUT, context, reconcile_job
from sync_service.web import ext

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates")
ACTIONS = ("from_s3", "from_manifest", "from_dataset", "distribute", "snapshot", "resync")
JOBS_KEPT = 10


@functools.cache
def _context_for(settings_key: int) -> Context:
    return make_context(ext.settings())


def _ctx() -> Context:
    return _context_for(id(ext.settings()))


def form_token() -> str:
    """The token every action form carries (an HMAC of the webhook secret: stable, not guessable)."""
    return hmac.new(
        ext.settings().webhook_secret.encode(), b"customlabels-console", hashlib.sha256
    ).hexdigest()


def _jobs_key(project_id: int) -> str:
    return f"cl:p:{project_id}:console-jobs"


def _info(project_id: int) -> ProjectInfo:
    info = _ctx().projects.find(project_id)
    if info is None:
        abort(404, description=f"project {project_id} is not a customlabels project")
    return info


@bp.get("/")
def index() -> Any:
    """Every project of ours, with links to its page."""
    projects = sorted(_ctx().projects.scan(), key=lambda p: p.title.lower())
    return render_template("console/index.html", projects=projects)


@bp.get("/projects/<int:project_id>")
def project(project_id: int) -> Any:
    """The dataset page of one project."""
    info = _info(project_id)
    ops = Datasets(_ctx())
    datasets = {}
    for name in DATASETS:
        if ops.has_dataset(info, name):
            record = (info.datasets or {}).get(name, {})
            datasets[name] = {"stats": ops.describe(info, name), "status": record.get("status", "CREATE_COMPLETE"),
                              "message": record.get("status_message", "")}  # fmt: skip
    errors = []
    for name in datasets:
        lines, _ = ops.list_entries(info, name, has_errors=True, max_results=50)
        for line in lines:
            errors.append({"dataset": name, **_errors_of(line)})

    return render_template(
        "console/project.html",
        info=info,
        datasets=datasets,
        labels=ops.labels(info),
        errors=errors,
        status=ProjectState(_ctx().redis, project_id).status(),
        jobs=_recent_jobs(_ctx().redis, project_id),
        tabs=_tab_links(info),
        token=form_token(),
        ls_url=ext.settings().ls_url,
        projects=[p for p in _ctx().projects.scan() if p.label_studio_project_id != project_id],
    )


def _errors_of(line: str) -> dict[str, Any]:
    obj = orjson.loads(line)
    return {"source_ref": obj.get("source-ref"), "codes": [e["code"] for e in obj.get("cl-errors", [])]}


def _tab_links(info: ProjectInfo) -> dict[str, str]:
    """Links into Label Studio's Data Manager, one per dataset tab (found by title)."""
    settings = ext.settings()
    base = f"{settings.ls_url}/projects/{info.label_studio_project_id}/data"
    links = {"all": base}
    try:
        by_title = tab_ids(label_studio(settings).views(info.label_studio_project_id))
    except LabelStudioError:  # the page still works without Label Studio's tabs
        return links
    for title, dataset in TABS:
        if title in by_title:
            links[dataset] = f"{base}?{urlencode({'tab': by_title[title]})}"
    return links


def _recent_jobs(redis: Redis, project_id: int) -> list[dict[str, Any]]:
    out = []
    for raw in redis.lrange(_jobs_key(project_id), 0, JOBS_KEPT - 1):
        job_id = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            job = Job.fetch(job_id, connection=redis)
        except NoSuchJobError:  # expired jobs leave their id behind
            continue
        status = job.get_status(refresh=False)
        out.append({"id": job_id, "description": job.description, "status": str(status.value if status else "?"),
                    "error": (job.exc_info or "").strip().splitlines()[-1:] if job.is_failed else []})  # fmt: skip
    return out


@bp.post("/projects/<int:project_id>/actions/<action>")
def act(project_id: int, action: str) -> Any:
    """Queue an action; back to the page with a message."""
    if not hmac.compare_digest(request.form.get("token", ""), form_token()):
        abort(403, description="the form token is missing or wrong; reload the page")
    if action not in ACTIONS:
        abort(404, description=f"no action {action!r}")
    info = _info(project_id)
    params = {k: v for k, v in request.form.items() if k != "token"}
    queue = ext.queue()
    if action == "resync":
        job = queue.enqueue(
            reconcile_job, project_id, job_timeout=JOB_TIMEOUT, description=f"resync {info.title}"
        )
    else:
        job = queue.enqueue(
            console_job,
            project_id,
            action,
            params,
            job_timeout=JOB_TIMEOUT,
            description=f"{action} {info.title}",
        )
    redis = ext.redis()
    redis.lpush(_jobs_key(project_id), job.id)
    redis.ltrim(_jobs_key(project_id), 0, JOBS_KEPT - 1)
    flash(f"{action.replace('_', ' ')} queued")
    return redirect(url_for("console.project", project_id=project_id))


def console_job(project_id: int, action: str, params: dict[str, str]) -> dict[str, Any]:
    """Job: run one console action with the dataset operations."""
    ops = Datasets(context())
    info = ops.project(project_id)
    dataset = params.get("dataset", "train")
    if action in ("from_s3", "from_manifest", "from_dataset") and not ops.has_dataset(info, dataset):
        info = ops.create_dataset(info, dataset)
    if action == "from_s3":
        result = ops.from_s3(
            info, dataset, params.get("uri", ""), labels_from_folders=bool(params.get("folders"))
        )
        return result.as_json()
    if action == "from_manifest":
        return ops.from_manifest(info, dataset, params.get("location", "")).as_json()
    if action == "from_dataset":
        ref, _, side = params.get("source", "").rpartition("/")
        return ops.from_dataset(info, dataset, ops.project(ref), side).as_json()
    if action == "distribute":
        return ops.distribute(info)
    if action == "snapshot":
        return ops.snapshot(info)
    raise invalid(f"no action {action!r}")
