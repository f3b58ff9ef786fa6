"""Webhooks delivered twice, out of order, stale, or not at all.

Label Studio posts to :class:`~tests.e2e.faults.hookproxy.HookProxy`, which forwards to the service.
The periodic reconcile is off: with duplicates and reordering alone (nothing lost) the hints must be
enough; then every delivery so far is replayed, newest first, straight at the service (stale events
naming tasks that are gone, or whose id SQLite gave to a new task); then some are dropped as well, and
a resync heals what they would have said.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from sync_service.config import SECRET_HEADER
from tests.e2e.faults.harness import fault_world
from tests.e2e.stack import SECRET
from tests.realparts import LabelStudioServer
from tests.signin import bearer

pytestmark = pytest.mark.e2e


def test_webhooks_twice_out_of_order_stale_and_dropped(
    label_studio: LabelStudioServer, redis_url: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    with fault_world(
        label_studio, s3, bucket, tmp_path, redis_url=redis_url, title="Faults hooks", hook_proxy=True,
        reconcile_seconds=3600,
    ) as fw:  # fmt: skip
        hooks, url = fw.hooks, fw.world.stack.url
        assert hooks is not None
        fw.stream.run_for(2)
        fw.converge("in order", timeout=60)

        hooks.faults(duplicate=0.4, delay=0.4)
        fw.stream.run_for(
            8, until=lambda: hooks.counts["duplicated"] > 1 and hooks.counts["delayed"] > 1, at_most=120
        )
        hooks.drain()
        reordered = fw.converge("duplicated and reordered", timeout=60)
        assert hooks.counts["duplicated"] > 0 and hooks.counts["delayed"] > 0

        # Every delivery again, newest first: all stale by now, some naming ids SQLite gave to new tasks.
        replayed = list(reversed(hooks.received))
        _post(url, replayed)
        stale = fw.converge("every delivery replayed, newest first", timeout=60)

        # A late TASKS_DELETED after SQLite gave the id to a new task (or a delete and a create of one id
        # in one burst) names a live task: the task must stay. Each lie alone, so that no rebuild hides it.
        project = {"id": fw.world.project_id}
        live = sorted(fw.stream.tasks)[-3:]
        lies: list[dict[str, Any]] = [
            {"action": "TASKS_DELETED", "project": project, "tasks": [{"id": t} for t in live]},
            {"action": "ANNOTATION_CREATED", "project": project, "task": {"id": max(fw.stream.tasks) + 7}},
        ]
        for lie in lies:
            _post(url, [json.dumps(lie).encode()])
            fw.converge(f"a stale {lie['action']}", timeout=60)

        hooks.faults(drop=0.3, duplicate=0.3, delay=0.3)
        fw.stream.run_for(6, until=lambda: hooks.counts["dropped"] > 1, at_most=120)
        hooks.drain()
        assert hooks.counts["dropped"] > 0
        assert (
            httpx.post(
                f"{url}/api/v1/projects/{fw.world.project_id}/resync", timeout=10, headers=bearer()
            ).status_code
            == 202
        )
        resynced = fw.converge("some dropped, then a resync", timeout=60)
        assert set(hooks.statuses) == {202}, hooks.statuses
        fw.finish(
            "webhooks_duplicated_reordered_dropped",
            converge_seconds=reordered,
            converge_seconds_after_stale_replay=stale,
            converge_seconds_after_drops_and_resync=resynced,
            replayed=len(replayed),
        )


def _post(url: str, bodies: list[bytes]) -> None:
    """Deliver webhook bodies straight to the service, as Label Studio would."""
    with httpx.Client(base_url=url, timeout=10) as client:
        for body in bodies:
            response = client.post(
                "/webhooks/label-studio",
                content=body,
                headers={SECRET_HEADER: SECRET, "Content-Type": "application/json"},
            )
            assert response.status_code == 202, response.text
