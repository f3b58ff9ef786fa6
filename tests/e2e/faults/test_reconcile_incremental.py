"""Webhooks lost, healed by the periodic reconcile, which reads only what changed.

Label Studio posts to :class:`~tests.e2e.faults.hookproxy.HookProxy`, which drops a fifth of the
deliveries while the change stream runs; then a task is deleted and an annotation changed with every
webhook dropped. Within one reconcile period (plus the publish) the manifests equal Label Studio's state,
and the reconcile that did it was the incremental one (the full one runs at the worker's start only).
A webhook switched off in Label Studio is switched on again by the reconcile; one left at an old address
is moved back, and a second one to us deleted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sync_service.edges.state import ProjectState
from tests.e2e.faults.harness import fault_world
from tests.realparts import LabelStudioServer

pytestmark = pytest.mark.e2e

PERIOD = 8.0


def test_dropped_webhooks_heal_within_one_reconcile_period(
    label_studio: LabelStudioServer, redis_url: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    with fault_world(
        label_studio, s3, bucket, tmp_path, redis_url=redis_url, title="Faults reconcile", hook_proxy=True,
        reconcile_seconds=PERIOD,
    ) as fw:  # fmt: skip
        hooks = fw.hooks
        assert hooks is not None
        fw.stream.run_for(2)
        fw.converge("in order", timeout=60)

        hooks.faults(drop=0.2)
        fw.stream.run_for(6, until=lambda: hooks.counts["dropped"] > 1, at_most=120)
        hooks.drain()
        assert hooks.counts["dropped"] > 0

        state = ProjectState(fw.redis, fw.world.project_id)
        full_before = state.reconcile_marks()["full"]
        hooks.faults(drop=1.0)  # these two send nothing that arrives
        fw.stream._delete_task()
        fw.stream._update()
        hooks.drain()
        started = time.monotonic()
        healed = fw.converge("dropped webhooks, healed by the reconcile", timeout=PERIOD + 60)
        assert time.monotonic() - started <= PERIOD + 30, "not healed within one reconcile period"
        # The reconcile records its start once its publish is done: the manifests can show the heal a
        # moment before the mark does.
        deadline = time.monotonic() + 10
        while (marks := state.reconcile_marks())["last"] <= full_before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marks["full"] == full_before < marks["last"], "the reconcile that healed it was a full one"

        # A webhook switched off (as Label Studio's next release does after 50 failed deliveries).
        hooks.faults()
        ls = fw.world.client
        hook = next(h for h in ls.webhooks.list(project=fw.world.project_id) if h.url.startswith(hooks.url))
        ls.webhooks.update(id=hook.id, is_active=False)
        deadline = time.monotonic() + PERIOD + 30
        while not next(h for h in ls.webhooks.list(project=fw.world.project_id) if h.id == hook.id).is_active:
            assert time.monotonic() < deadline, "the reconcile did not switch the webhook on again"
            time.sleep(0.5)

        # The service moved (its webhook left at an old address, our secret still on it): the reconcile
        # moves it back, keeping its id. Then a second webhook to us: deleted (Label Studio waits on each
        # delivery inside the save).
        ours = hook.url

        def webhooks_become(wanted: list[tuple[int, str]], what: str) -> None:
            deadline = time.monotonic() + PERIOD + 30
            while (now := [(h.id, h.url) for h in ls.webhooks.list(project=fw.world.project_id)]) != wanted:
                assert time.monotonic() < deadline, f"{what}: the reconcile left these webhooks: {now}"
                time.sleep(0.5)

        ls.webhooks.update(id=hook.id, url="http://127.0.0.1:9/webhooks/label-studio", actions=hook.actions)
        webhooks_become([(hook.id, ours)], "moved")
        ls.webhooks.create(
            project=fw.world.project_id, url=ours, send_payload=True, send_for_all_actions=False,
            actions=hook.actions,
        )  # fmt: skip
        webhooks_become([(hook.id, ours)], "doubled")
        fw.finish("webhooks_dropped_healed_by_the_incremental_reconcile", converge_seconds=healed)
