"""``customlabels worker``: RQ workers on the service's queue, with the scheduler (retries, backoff) and
the periodic reconcile of every project (also once at start, so a worker that was down catches up).
"""

from __future__ import annotations

import logging
import threading
import time

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Worker

from sync_service.config import Settings
from sync_service.jobs.publish import JOB_TIMEOUT, context, queue_for, reconcile_all_job

log = logging.getLogger(__name__)
RECONCILE_GUARD = "cl:reconcile-guard"


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


def run_worker(settings: Settings, *, burst: bool = False, name: str | None = None) -> bool:
    """Work the queue until stopped (or, with ``burst``, until it is empty); returns RQ's result.

    RQ's worker quits when Redis goes away while a job runs; this one then waits for Redis and starts
    again, with a reconcile of every project (a restarted Redis has lost the queue and the hints).
    """
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
                worker = Worker([queue_for(settings, ctx.redis)], connection=ctx.redis, name=name)
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
