"""Label Studio stopped for 60 s while annotators work, then started again on the same port and data.

The session's server is shared, so this test runs a Label Studio of its own (a copy of the session's
database). While it is away the worker's publishes and reconciles fail and are retried; once it is back
the periodic reconcile (5 s) brings S3 to its state, reading every task once: the save the stop cut short
may have written an annotation without moving its task's ``updated_at`` or sending its webhook. The test
leaves such an annotation in the stopped server's database, so that only that full read finds it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sync_service.edges.state import ProjectState
from tests.e2e.faults.harness import fault_world, private_label_studio
from tests.realparts import LabelStudioServer

pytestmark = pytest.mark.e2e

AWAY_SECONDS = 60.0


def test_label_studio_away_for_a_minute(
    label_studio: LabelStudioServer, redis_url: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    with (
        private_label_studio(label_studio, tmp_path / "ls") as private,
        fault_world(
            private.server, s3, bucket, tmp_path, redis_url=redis_url, title="Faults ls", reconcile_seconds=5
        ) as fw,
    ):
        fw.stream.run_for(2)
        fw.converge("before the fault", timeout=60)
        fw.stream.start()
        time.sleep(3)
        stopped, stopped_at = time.monotonic(), time.time()
        private.stop()
        cut_short = private.cut_short_save(fw.world.project_id)
        fw.stream.spared = fw.stream.spared | {cut_short}  # a change of the stream's would report that task
        time.sleep(AWAY_SECONDS - (time.monotonic() - stopped))
        restart = private.start()
        away = time.monotonic() - stopped
        time.sleep(3)
        fw.stream.stop()
        after = fw.converge("Label Studio back", timeout=90)
        state = ProjectState(fw.redis, fw.world.project_id)
        deadline = time.monotonic() + 30  # the periodic reconcile after Label Studio came back: a full one
        while not ((marks := state.reconcile_marks()).get("full", 0) > marks.get("away", 0) > stopped_at):
            assert time.monotonic() < deadline, marks
            time.sleep(0.2)
        fw.finish(
            "label_studio_away_60s",
            converge_seconds=after,
            away_seconds=round(away, 1),
            cut_short_task=cut_short,
            restart_seconds=round(restart, 1),
        )
