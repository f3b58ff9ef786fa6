"""The stack's Redis database: claimed by one home at a time (the service's cache keys are not per
stack), and the RQ workers listening on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from plugin.localstack.errors import StackError
from plugin.localstack.layout import Layout
from plugin.localstack.plan import Plan
from plugin.localstack.record import read_record, utc_now
from sync_service.config import redact_url

REDIS_OWNER_KEY = "customlabels:up:owner"
"""Names the home whose stack uses this Redis database (the service's keys are not per stack)."""


def redis_owner(url: str) -> dict[str, Any] | None:
    """The ``up`` home recorded as using the database at ``url`` (None when none is, or it is away)."""
    import redis  # noqa: PLC0415 - redis-py costs start-up time

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=3)
    try:
        raw = client.get(REDIS_OWNER_KEY)
    except (redis.RedisError, OSError):
        return None
    finally:
        client.close()
    try:
        owner = json.loads(raw) if raw else None
    except ValueError:
        return None
    return owner if isinstance(owner, dict) else None


def claim_redis(plan: Plan) -> int:
    """Take the Redis database for this home; return how many cached keys of another stack were dropped.

    The service keeps its caches under ``cl:`` keyed by Label Studio project id, which is 1 in every
    fresh Label Studio: two homes on one database would read each other's project records. So a
    database last used by another home's stack (recorded in :data:`REDIS_OWNER_KEY`) has its ``cl:`` keys
    dropped (that stack's caches, rebuilt from S3 and Label Studio), and one in use by another home's
    running stack is refused. A database holding ``cl:`` keys that no stack of ours recorded is refused
    too, and nothing of it is deleted: those keys are another deployment's (a service pointed at this
    Redis), whose caches and pending events it would lose.
    """
    import redis  # noqa: PLC0415 - redis-py costs start-up time

    me = str(plan.layout.home)
    owner = redis_owner(plan.redis_url)
    if owner is not None and owner.get("home") == me:
        return 0
    if owner is not None and owner.get("home"):
        other = read_record(Layout(Path(str(owner["home"]))))
        if other is not None and other.processes and all(other.alive().values()):
            raise StackError(
                f"the Redis database {redact_url(plan.redis_url)} is in use by the customlabels stack in "
                f"{owner['home']}: stop it (`customlabels down --home ...`) or give this one its own "
                "database, e.g. CUSTOMLABELS_REDIS_URL=redis://127.0.0.1:6379/1"
            )
    client = redis.Redis.from_url(plan.redis_url, socket_connect_timeout=2, socket_timeout=10)
    try:
        if owner is None and next(iter(client.scan_iter(match="cl:*", count=1000)), None) is not None:
            raise StackError(
                f"the Redis database {redact_url(plan.redis_url)} holds keys of a customlabels service that "
                "`customlabels up` did not start (cl:*); they are left as they are. Give the stack a "
                "database of its own, e.g. CUSTOMLABELS_REDIS_URL=redis://127.0.0.1:6379/1"
            )
        dropped = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match="cl:*", count=1000) if owner is not None else ():
            batch.append(key)
            if len(batch) >= 1000:
                dropped += int(client.delete(*batch))
                batch.clear()
        if batch:
            dropped += int(client.delete(*batch))
        client.set(REDIS_OWNER_KEY, json.dumps({"home": me, "since": utc_now()}))
    finally:
        client.close()
    return dropped


def rq_worker_pids(url: str, queue: str) -> list[int]:
    """Pids of the RQ workers listening on ``queue`` (empty when Redis does not answer)."""
    import redis  # noqa: PLC0415 - redis-py costs start-up time
    from rq import Queue, Worker  # noqa: PLC0415 - rq costs start-up time

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=3)
    try:
        return [int(w.pid or 0) for w in Worker.all(connection=client, queue=Queue(queue, connection=client))]
    except (redis.RedisError, OSError):
        return []
    finally:
        client.close()
