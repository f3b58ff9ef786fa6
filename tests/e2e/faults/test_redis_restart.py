"""Redis killed and restarted empty while annotators work: queues, hints, caches and locks are gone.

The tests' shared Redis on 6379 is never touched: this test starts a ``redis-server`` of its own on a
free port (no persistence, so a restart loses everything) and points the stack at it. Events sent while
it is down are lost (the webhook answers an error; Label Studio never retries); the periodic reconcile
(5 s here) rebuilds the caches from Label Studio and brings S3 back.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from plugin.localstack.processes import free_port
from plugin.localstack.redis_server import start_redis
from tests.e2e.faults.harness import fault_world
from tests.realparts import LabelStudioServer

pytestmark = pytest.mark.e2e

DOWN_SECONDS = 2.0


def test_redis_restarted_with_its_data_gone(
    label_studio: LabelStudioServer, s3: Any, bucket: str, tmp_path: Path
) -> None:
    port = free_port()
    servers = [start_redis(port, tmp_path / "redis")]
    try:
        with fault_world(
            label_studio, s3, bucket, tmp_path, redis_url=servers[0].url, title="Faults redis",
            reconcile_seconds=5,
        ) as fw:  # fmt: skip
            fw.stream.run_for(2)
            before = fw.converge("before the fault", timeout=60)
            assert fw.redis.dbsize() > 0
            fw.stream.start()
            time.sleep(3)
            os.killpg(servers[0].process.pid, signal.SIGKILL)
            servers[0].process.wait(10)
            time.sleep(DOWN_SECONDS)
            servers.append(start_redis(port, tmp_path / "redis"))
            assert not fw.redis.exists(f"cl:p:{fw.world.project_id}:entries")  # its data is gone
            time.sleep(3)
            fw.stream.stop()
            after = fw.converge("Redis restarted empty", timeout=60)
            assert fw.redis.exists(f"cl:p:{fw.world.project_id}:entries")  # the cache was rebuilt
            fw.finish(
                "redis_restarted_empty",
                converge_seconds=after,
                converge_seconds_before_fault=before,
                redis_down_seconds=DOWN_SECONDS,
            )
    finally:
        for server in servers:
            server.stop()
