"""``customlabels worker``: RQ workers on the service's queue, with the scheduler (retries, backoff) and
the periodic reconcile of every project (also once at start, so a worker that was down catches up).

A publish of ordinary events (the one job per annotation save) runs in the worker's own process: RQ's
fork of a work-horse per job costs about 20 ms of CPU, as much as the publish itself, on the cores Label
Studio saves annotations with. Every other job (rebuilds, reconciles, dataset operations: long, large in
memory) runs in a work-horse, as RQ does.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, Worker
from rq.defaults import DEFAULT_WORKER_TTL
from rq.job import Job
from rq.worker.base import WorkerStatus

from sync_service.config import Settings
from sync_service.edges.state import ProjectState
from sync_service.jobs.publish import JOB_TIMEOUT, context, publish_job, queue_for, reconcile_all_job

log = logging.getLogger(__name__)
RECONCILE_GUARD = "cl:reconcile-guard"
PUBLISH_JOB = f"{publish_job.__module__}.{publish_job.__qualname__}"


def runs_inline(job: Job, redis: Redis) -> bool:
    """Whether ``job`` is a publish of ordinary events: not forced, no full rebuild pending (a
    PROJECT_UPDATED) and an entry cache to publish from (a publish by changes, not a rebuild)."""
    if job.func_name != PUBLISH_JOB or job.kwargs.get("force") or len(job.args) != 1:
        return False
    state = ProjectState(redis, int(job.args[0]))
    return not state.full_pending() and state.has_entries()


class PublishingWorker(Worker):
    """RQ's forking worker, except that a publish of ordinary events (:func:`runs_inline`) runs in this
    process, as RQ's ``SimpleWorker`` runs every job (its job timeout still applies: RQ's death penalty
    is a signal in this, the main, thread)."""

    _inline = False

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run ``job`` here when it is a publish of ordinary events, else in a work-horse."""
        if not runs_inline(job, self.connection):
            super().execute_job(job, queue)
            return
        self._inline = True
        try:
            execution = self.prepare_execution(job)
            self.perform_job(job, queue, execution)
            self.set_state(WorkerStatus.IDLE)
        finally:
            self._inline = False

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """The worker's heartbeat while ``job`` runs: a job run here gets no beat until it ends, so the
        beat covers its whole timeout (as ``SimpleWorker``'s does)."""
        if self._inline:
            return int(job.timeout or DEFAULT_WORKER_TTL) + 60
        return int(super().get_heartbeat_ttl(job, working_time))


def queue_reconcile_all(settings: Settings, redis: Redis, *, force: bool = False) -> bool:
    """Queue a reconcile of every project, at most once per period over all workers (unless ``force``)."""
    period = max(int(settings.reconcile_seconds), 1)
    if not force and not redis.set(RECONCILE_GUARD, 1, nx=True, ex=period):
        return False
    queue_for(settings, redis).enqueue(
        reconcile_all_job, job_timeout=JOB_TIMEOUT, description="reconcile every project"
    )
    return True


def _periodic(settings: Settings, stop: threading.Event) -> None:
    redis = Redis.from_url(settings.redis_url)
    while not stop.wait(settings.reconcile_seconds):
        try:
            queue_reconcile_all(settings, redis)
        except Exception:  # the loop must outlive a Redis restart
            log.exception("could not queue the periodic reconcile")


def lower_priority(nice: int) -> int:
    """Lower this process's CPU priority to the nice value ``nice`` (never raise it: that needs a
    privilege, and a process started lower was meant to be lower); returns the value it runs at.

    The worker's publishes are background work beside the saves annotators wait for: where both share
    busy cores, Linux's scheduler weighs a nice-10 process at about a tenth of a nice-0 one.
    """
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        log.info("worker CPU priority lowered to nice %s (CUSTOMLABELS_WORKER_NICE)", nice)
        return nice
    return current


def run_worker(settings: Settings, *, burst: bool = False, name: str | None = None) -> bool:
    """Work the queue until stopped (or, with ``burst``, until it is empty); returns RQ's result.

    The worker first lowers its CPU priority (``settings.worker_nice``). RQ's worker quits when Redis
    goes away while a job runs; this one then waits for Redis and starts again, with a reconcile of
    every project (a restarted Redis has lost the queue and the hints).
    """
    lower_priority(settings.worker_nice)
    ctx = context()
    queue_reconcile_all(settings, ctx.redis, force=True)
    stop = threading.Event()
    ticker = threading.Thread(target=_periodic, args=(settings, stop), daemon=True, name="reconcile-timer")
    if not burst:
        ticker.start()
    backoff, restarted = 1.0, False
    try:
        while True:
            try:
                if restarted:
                    queue_reconcile_all(settings, ctx.redis, force=True)
                worker = PublishingWorker([queue_for(settings, ctx.redis)], connection=ctx.redis, name=name)
                return bool(worker.work(with_scheduler=True, burst=burst, logging_level="INFO"))
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if burst:
                    raise
                log.warning("lost Redis (%s); the worker starts again in %.0f s", exc, backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
            name, restarted = None, True  # the dead worker's record may still be in Redis under its name
    finally:
        stop.set()
