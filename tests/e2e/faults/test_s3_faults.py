"""S3 answering 500/503 and slowly to a share of requests, some writes failing after they happened.

The stack reaches S3 through :class:`~tests.e2e.faults.s3proxy.S3Proxy`. While annotators work, 30 % of
requests fail (10 % more of the writes are stored and then reported failed) and 20 % are slow; S3 must
still converge while the faults go on (botocore retries once, the job retries with backoff, the
reconcile runs every 5 s), and nothing half-written may ever be read back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.faults.harness import fault_world
from tests.realparts import LabelStudioServer

pytestmark = pytest.mark.e2e


def test_s3_failing_and_slow(
    label_studio: LabelStudioServer, redis_url: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    with fault_world(
        label_studio, s3, bucket, tmp_path, redis_url=redis_url, title="Faults s3", reconcile_seconds=5
    ) as fw:
        fw.stream.run_for(2)
        fw.converge("before the fault", timeout=60)
        fw.s3proxy.faults(error=0.3, error_after=0.1, slow=0.2)
        seen = fw.s3proxy.counts
        fw.stream.run_for(10, until=lambda: min(seen["error"], seen["error-after"], seen["slow"]) > 0)
        during = fw.converge("S3 failing and slow", timeout=90)
        fw.s3proxy.faults()
        assert min(seen["error"], seen["error-after"], seen["slow"]) > 0, seen
        fw.stream.run_for(2)
        healed = fw.converge("S3 healthy again", timeout=60)
        fw.finish("s3_errors_and_slow", converge_seconds=during, converge_seconds_after_heal=healed)
