"""A process we started: recorded with its start time, stopped with its group, never mistaken."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from plugin.localstack.processes import Proc, process_start_time


def test_a_recorded_process_is_stopped_with_its_group(
    sleeper: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    proc = Proc.of("worker", sleeper, tmp_path / "log", ["sleep", "60"])
    assert proc.alive and proc.start is not None
    again = Proc.from_json("worker", json.loads(json.dumps(proc.to_json())))
    assert again.alive
    assert again.stop(grace=5)
    sleeper.wait(5)
    assert not proc.alive and not again.stop()


def test_a_pid_that_is_no_longer_ours_is_never_signalled(sleeper: subprocess.Popen[bytes]) -> None:
    start = process_start_time(sleeper.pid)
    assert start is not None
    stranger = Proc("redis", sleeper.pid, start + 1, "", [])  # same pid, another process
    assert not stranger.alive
    assert not stranger.stop(grace=1)
    time.sleep(0.2)
    assert sleeper.poll() is None
