"""Expensive actions (resync, imports, rebuilds) are queued once per project and action: while one
waits in the queue, asking again answers with that job instead of queuing another."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import WatchError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from sync_service.web.auth import Principal, audit

WAITING = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED)
"""A job in one of these has not started: a second request would only repeat it."""
CLAIM_SECONDS = 3600
"""How long a claim outlives its job at most (the claim of a job that vanished from RQ), seconds."""
ENQUEUE_GRACE = 10.0
"""A claim this young whose job RQ does not know yet is a job being enqueued, seconds."""


@dataclass(frozen=True, slots=True)
class Queued:
    """The job that does an action: ``new`` when this request queued it, else it was already queued."""

    job_id: str
    new: bool


def _key(project_id: int, action: str) -> str:
    return f"cl:p:{project_id}:queued:{action}"


def _waiting(redis: Redis, job_id: str, claimed_at: float) -> bool:
    try:
        status = Job.fetch(job_id, connection=redis).get_status(refresh=False)
    except NoSuchJobError:
        return time.time() - claimed_at < ENQUEUE_GRACE
    return status in WAITING


def enqueue_once(
    queue: Queue,
    project_id: int,
    action: str,
    func: Callable[..., Any],
    *args: Any,
    who: Principal,
    **options: Any,
) -> Queued:
    """Queue ``func(*args)`` (RQ ``options``) for the project's ``action`` unless one is waiting; the
    audit log names the person who asked either way."""
    redis: Redis = queue.connection
    key = _key(project_id, action)
    job_id = uuid.uuid4().hex
    with redis.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]
                current = pipe.get(key)
                if current is not None:
                    text = current.decode() if isinstance(current, bytes) else str(current)
                    held, _, at = text.partition(" ")
                    if _waiting(redis, held, float(at or 0)):
                        pipe.reset()
                        audit.info("project %s: %s already queued (job %s); asked again by %s",
                                   project_id, action, held, who.name)  # fmt: skip
                        return Queued(held, new=False)
                pipe.multi()
                pipe.set(key, f"{job_id} {time.time()}", ex=CLAIM_SECONDS)
                pipe.execute()
                break
            except WatchError:  # another request claimed it in between: look again
                continue
    queue.enqueue(func, *args, job_id=job_id, **options)
    audit.info("project %s: %s queued by %s (job %s)", project_id, action, who.name, job_id)
    return Queued(job_id, new=True)
