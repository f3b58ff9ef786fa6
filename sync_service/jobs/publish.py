"""RQ jobs: thin functions (ids in, publisher call, nothing else) and the queueing of them.

Jobs that fail because Label Studio or S3 is away are retried with backoff (``RETRY``); the events they
took are given back first, so nothing is lost while the retries run.
"""

from __future__ import annotations

import functools
import logging

from redis import Redis
from rq import Queue, Retry

from sync_service.config import Settings, load_settings
from sync_service.domain.context import Context, make_context
from sync_service.domain.reconcile import reconcile
from sync_service.edges.state import ProjectState
from sync_service.errors import LabelStudioError

log = logging.getLogger(__name__)

RETRY = Retry(max=12, interval=[1, 2, 4, 8, 15, 30, 60, 60, 60, 120, 120, 300])
JOB_TIMEOUT = 1800  # seconds: a full rebuild of 250,000 tasks fits well inside


@functools.cache
def context() -> Context:
    """This process's context, from the environment (built once)."""
    return make_context(load_settings())


def queue_for(settings: Settings, redis: Redis) -> Queue:
    """The service's RQ queue."""
    return Queue(settings.queue, connection=redis)


def enqueue_publish(queue: Queue, project_id: int, *, force: bool = False) -> None:
    """Queue a publish of the project."""
    queue.enqueue(
        publish_job,
        project_id,
        force=force,
        retry=RETRY,
        job_timeout=JOB_TIMEOUT,
        description=f"publish project {project_id}",
    )


def publish_job(project_id: int, force: bool = False) -> dict[str, object] | None:
    """Job: publish one project's manifests (``force``: a reconcile, rebuilt from all tasks)."""
    result = context().publisher.publish(project_id, force=force)
    if result is None:
        return None
    log.info(
        "project %s published=%s rebuilt=%s entries=%s in %.2fs",
        project_id,
        result.published,
        result.rebuilt,
        result.entries,
        result.seconds,
    )
    return {"published": result.published, "entries": result.entries, "seconds": result.seconds}


def reconcile_job(project_id: int) -> dict[str, object] | None:
    """Job: rebuild one project from Label Studio and correct any drift in S3 (``project resync``): a
    full reconcile (its webhook checked too), recorded as one, so the periodic reconcile that follows is
    incremental."""
    result = reconcile(context(), project_id, full=True)
    published = result.published
    if published is None:
        return None
    log.info(
        "project %s resynced: entries=%s in %.2fs, webhook repaired=%s",
        project_id,
        published.entries,
        published.seconds,
        result.webhook_repaired,
    )
    return {"published": published.published, "entries": published.entries, "seconds": published.seconds}


def periodic_reconcile_job(project_id: int) -> dict[str, object]:
    """Job: the periodic reconcile of one project, in proportion to what changed (a full one when due);
    see :mod:`sync_service.domain.reconcile`."""
    result = reconcile(context(), project_id)
    log.info(
        "project %s reconciled full=%s changed=%s deleted=%s webhook repaired=%s",
        project_id,
        result.full,
        result.changed,
        result.deleted,
        result.webhook_repaired,
    )
    return {"full": result.full, "changed": result.changed, "deleted": result.deleted}


def reconcile_all_job() -> list[int]:
    """Job: queue the periodic reconcile of every project of ours; forget projects Label Studio no
    longer has. Label Studio found away makes each project's next reconcile a full one."""
    ctx = context()
    queue = queue_for(ctx.settings, ctx.redis)
    ids = []
    ours = list(ctx.projects.scan())
    for info in ours:
        pid = info.label_studio_project_id
        try:
            exists = ctx.ls.project_exists(pid)
        except LabelStudioError as exc:  # away: every project's next reconcile is a full one
            for other in ours:
                ProjectState(ctx.redis, other.label_studio_project_id).note_if_away(exc)
            raise
        if not exists:
            ProjectState(ctx.redis, pid).forget()
            ctx.projects.forget(pid)
            continue
        queue.enqueue(
            periodic_reconcile_job,
            pid,
            retry=RETRY,
            job_timeout=JOB_TIMEOUT,
            description=f"reconcile project {pid}",
        )
        ids.append(pid)
    return ids


def forget_project_job(project_id: int) -> None:
    """Job: Label Studio says the project was deleted; drop what we cache of it (S3 files stay)."""
    ctx = context()
    ProjectState(ctx.redis, project_id).forget()
    ctx.projects.forget(project_id)
