"""The dataset console: a server-rendered page per project, in the spirit of Rekognition's dataset page.

Training and test datasets with their stats, the labels with entry and box counts, the entries with
validation errors and their codes, the sync status, and actions (create a dataset from S3, a manifest or
another dataset; distribute; snapshot; resync) queued as jobs. No JavaScript build: plain HTML forms.

A person signs in with their Label Studio account (:mod:`.auth`) and sees and acts on only the projects
Label Studio lets them see; any other project answers the same 404 as one that does not exist. Every
form carries the session's own CSRF token: a token copied from a page is useless without the session.
"""

from __future__ import annotations

import functools
import hmac
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import orjson
from flask import Blueprint, abort, flash, g, redirect, render_template, request, session, url_for
from redis import Redis
from rq.exceptions import NoSuchJobError
from rq.job import Job

from sync_service.domain.bootstrap import label_studio
from sync_service.domain.context import Context, make_context
from sync_service.domain.datasets import DATASETS, DatasetError, Datasets, invalid
from sync_service.domain.projects import ProjectInfo
from sync_service.domain.tabs import TABS, tab_ids
from sync_service.edges.labelstudio import LabelStudio
from sync_service.edges.labelstudio import sign_in as label_studio_sign_in
from sync_service.edges.state import ProjectState
from sync_service.errors import LabelStudioError, SignInRefused
from sync_service.jobs.publish import JOB_TIMEOUT, context, reconcile_job
from sync_service.web import auth, ext
from sync_service.web.once import enqueue_once

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates")
ACTIONS = (
    "from_s3",
    "from_manifest",
    "from_dataset",
    "distribute",
    "snapshot",
    "resync",
    "check",
    "check_fix",
)
JOBS_KEPT = 10


@functools.cache
def _context_for(settings_key: int) -> Context:
    return make_context(ext.settings())


def _ctx() -> Context:
    return _context_for(id(ext.settings()))


PUBLIC = ("console.sign_in", "console.sign_in_form")
"""The console's only pages for people not signed in."""
SIGN_IN_CSRF = "sign_in_csrf"


def form_token() -> str:
    """The token every action form carries: the signed-in session's own CSRF token."""
    principal: auth.Principal = g.principal
    return principal.csrf


@bp.before_request
def _signed_in() -> Any:
    if request.endpoint in PUBLIC:
        return None
    principal = auth.session_principal()
    if principal is None:
        return redirect(url_for("console.sign_in", next=_here()))
    g.principal = principal
    return None


@bp.errorhandler(SignInRefused)
def _ended(exc: SignInRefused) -> Any:
    """Label Studio no longer accepts the person's session (signed out there, deactivated): sign in again."""
    auth.end_session(g.get("principal"))
    flash("Your Label Studio session ended; sign in again.")
    return redirect(url_for("console.sign_in", next=_here()))


@bp.app_context_processor
def _who() -> dict[str, Any]:
    principal = g.get("principal")
    return {"signed_in_as": principal.name if principal is not None else None,
            "csrf_token": principal.csrf if principal is not None else ""}  # fmt: skip


def _here() -> str:
    return request.full_path.rstrip("?") if request.method == "GET" else request.path


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of the console only (never another site)."""
    if value and value.startswith("/console/") and "//" not in value and "\\" not in value:
        return value
    return url_for("console.index")


@bp.get("/sign-in")
def sign_in_form() -> Any:
    """The sign-in page: Label Studio's email and password."""
    session[SIGN_IN_CSRF] = token = session.get(SIGN_IN_CSRF) or secrets.token_urlsafe(32)
    return render_template(
        "console/sign_in.html", next=_safe_next(request.args.get("next")), token=token,
        ls_url=ext.settings().ls_url,
    )  # fmt: skip


@bp.post("/sign-in")
def sign_in() -> Any:
    """Check the email and password with Label Studio; start a session and go on to ``next``."""
    expected = session.get(SIGN_IN_CSRF)
    if not expected or not hmac.compare_digest(
        str(expected).encode(), request.form.get("token", "").encode()
    ):
        abort(403, description="the form token is missing or wrong; reload the sign-in page")
    settings = ext.settings()
    email, password = request.form.get("email", "").strip(), request.form.get("password", "")
    target = _safe_next(request.form.get("next"))
    try:
        ls_session = label_studio_sign_in(settings.ls_url, email, password)
        user = LabelStudio.signed_in(settings.ls_url, ls_session, attempts=1).whoami()
    except SignInRefused:
        auth.audit.info("console sign-in refused by Label Studio")
        flash("Label Studio did not accept this email and password.")
        return redirect(url_for("console.sign_in_form", next=target))
    sid = auth.start_session(ext.redis(), ls_session, user)
    session.clear()  # a new session id at sign-in: nothing set before it carries over
    session[auth.SESSION_KEY] = sid
    session.permanent = True
    auth.audit.info("console sign-in: user %s", user.get("id"))
    return redirect(target)


@bp.post("/sign-out")
def sign_out() -> Any:
    """End the session, here and in Label Studio."""
    if not auth.csrf_ok(g.principal, request.form.get("token")):
        abort(403, description="the form token is missing or wrong; reload the page")
    auth.end_session(g.principal)
    return redirect(url_for("console.sign_in_form"))


def _jobs_key(project_id: int) -> str:
    return f"cl:p:{project_id}:console-jobs"


def _info(project_id: int) -> ProjectInfo:
    """The project, if it is ours and the person may see it in Label Studio; else the same 404."""
    principal: auth.Principal = g.principal
    info = _ctx().projects.find(project_id) if principal.can_see(project_id) else None
    if info is None:
        abort(404, description=f"project {project_id} is not a customlabels project")
    return info


def _visible_projects() -> list[ProjectInfo]:
    """Our projects that Label Studio lets the person see, by title."""
    principal: auth.Principal = g.principal
    seen = principal.visible()
    return sorted(
        (p for p in _ctx().projects.scan() if seen is None or p.label_studio_project_id in seen),
        key=lambda p: p.title.lower(),
    )


@bp.get("/")
def index() -> Any:
    """Every project of ours the person sees in Label Studio, with links to its page."""
    return render_template("console/index.html", projects=_visible_projects())


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
    jobs = _recent_jobs(_ctx().redis, project_id)
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
        jobs=jobs,
        check=_last_check(jobs),
        tabs=_tab_links(info),
        token=form_token(),
        ls_url=ext.settings().ls_url,
        projects=[p for p in _visible_projects() if p.label_studio_project_id != project_id],
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
                    "error": (job.exc_info or "").strip().splitlines()[-1:] if job.is_failed else [],
                    "action": job.args[1] if (job.func_name or "").endswith(".console_job") else None,
                    "result": job.return_value() if job.is_finished else None})  # fmt: skip
    return out


def _last_check(jobs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The report of the newest finished leakage check among the recent jobs (None: no check yet)."""
    for job in jobs:
        if job["action"] in ("check", "check_fix") and isinstance(job["result"], dict):
            report: dict[str, Any] = job["result"]
            return report
    return None


@bp.post("/projects/<int:project_id>/actions/<action>")
def act(project_id: int, action: str) -> Any:
    """Queue an action (once while one of it waits); back to the page with a message."""
    if not auth.csrf_ok(g.principal, request.form.get("token")):
        abort(403, description="the form token is missing or wrong; reload the page")
    if action not in ACTIONS:
        abort(404, description=f"no action {action!r}")
    info = _info(project_id)
    params = {k: v for k, v in request.form.items() if k != "token"}
    if action == "from_dataset":  # the source project must be one the person sees too
        source = params.get("source", "").partition("/")[0]
        if not source.isdigit():
            abort(404, description="no source project")
        _info(int(source))
    if action in ("from_s3", "from_manifest"):  # refused now, with the reason, rather than in the job
        try:
            Datasets(_ctx()).sources.check(params.get("uri" if action == "from_s3" else "location", ""))
        except DatasetError as exc:
            flash(f"{action.replace('_', ' ')} refused: {exc}")
            return redirect(url_for("console.project", project_id=project_id))
    func: Callable[..., Any]
    args: tuple[Any, ...]
    if action == "resync":
        func, args = reconcile_job, (project_id,)
    else:
        func, args = console_job, (project_id, action, params)
    queued = enqueue_once(
        ext.queue(), project_id, action, func, *args,
        who=g.principal, job_timeout=JOB_TIMEOUT, description=f"{action} {info.title}",
    )  # fmt: skip
    if queued.new:
        redis = ext.redis()
        redis.lpush(_jobs_key(project_id), queued.job_id)
        redis.ltrim(_jobs_key(project_id), 0, JOBS_KEPT - 1)
        flash(f"{action.replace('_', ' ')} queued")
    else:
        flash(f"{action.replace('_', ' ')} is already queued; it runs once")
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
    if action in ("check", "check_fix"):
        return ops.check(info, fix=action == "check_fix", region=ops.ctx.settings.s3_region)
    raise invalid(f"no action {action!r}")
