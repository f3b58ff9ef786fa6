"""kill -9 of a worker in the middle of a publish, while annotators keep working; then its restart.

1,500 classification tasks make a full rebuild last seconds: a resync is requested, and the worker that
runs it is killed (its whole process group: the RQ work-horse too) once it holds the project's lock. The
periodic reconcile is off, so only the publishing itself can heal: the other worker must take over the
dead one's lock and the events it had taken, and bring S3 back to Label Studio's state.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from redis import Redis
from rq import Queue, Worker

from sync_service.edges.state import LOCK_TTL
from tests.builders import choices
from tests.e2e.faults.harness import FaultWorld, fault_world
from tests.realparts import LabelStudioServer
from tests.signin import bearer

pytestmark = pytest.mark.e2e

BULK = 1500


def _holder_running(
    fw: FaultWorld, job_id: str, timeout: float = 30
) -> tuple[subprocess.Popen[bytes], bytes]:
    """Our worker process whose work-horse holds the project's lock while it runs ``job_id``, and the
    lock's value (``host:pid:random``: the pid is the work-horse's, a child of the worker)."""
    stack = fw.world.stack
    connection = Redis.from_url(stack.env["CUSTOMLABELS_REDIS_URL"])
    queue = Queue(stack.env["CUSTOMLABELS_QUEUE"], connection=connection)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        token = fw.redis.get(fw.lock_key)
        if isinstance(token, bytes):
            try:
                parent = psutil.Process(int(token.split(b":")[1])).ppid()
            except psutil.NoSuchProcess:
                continue
            running = {w.pid: w.get_current_job_id() for w in Worker.all(connection=connection, queue=queue)}
            for process in stack.workers:
                if process.pid == parent and running.get(parent) == job_id:
                    return process, token
        time.sleep(0.02)
    raise AssertionError(f"no worker took the lock for job {job_id} within {timeout} s\n{stack.logs()}")


def test_kill_9_a_worker_in_the_middle_of_a_publish(
    label_studio: LabelStudioServer, redis_url: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    with fault_world(
        label_studio, s3, bucket, tmp_path, redis_url=redis_url, title="Faults kill", workers=2,
        reconcile_seconds=3600,
    ) as fw:  # fmt: skip
        w = fw.world
        bulk = [
            {
                "data": {"image": w.ref(f"bulk/{i:05d}.jpg"), "dataset": "test" if i % 5 == 0 else "train"},
                "annotations": [{"result": [choices("indoor" if i % 2 else "outdoor")]}],
            }
            for i in range(BULK)
        ]
        w.client.projects.import_tasks(id=w.project_id, request=bulk)
        fw.stream.start()
        time.sleep(4)
        response = httpx.post(
            f"{w.stack.url}/api/v1/projects/{w.project_id}/resync", timeout=10, headers=bearer()
        )
        assert response.status_code == 202
        victim, token = _holder_running(fw, response.json()["job"])
        time.sleep(0.4)  # past the debounce: the events are taken, the export is being read
        w.stack.kill_worker(victim)
        assert fw.redis.get(fw.lock_key) == token, "the worker was not killed in the middle of its publish"
        time.sleep(3)  # annotators go on: the surviving worker gets their events
        fw.stream.stop()
        survivor = fw.converge("one worker killed mid-publish", timeout=LOCK_TTL + 45)

        w.stack.start_worker()
        fw.stream.run_for(3)
        restarted = fw.converge("the killed worker restarted", timeout=60)
        fw.finish(
            "worker_kill_9_mid_publish",
            converge_seconds=survivor,
            converge_seconds_after_restart=restarted,
            lock_ttl_seconds=LOCK_TTL,
            tasks=len(fw.stream.tasks),
        )
