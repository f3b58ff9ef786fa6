"""A process we started: recorded with its start time, stopped with its group, never mistaken."""

from __future__ import annotations

import json
import random
import socket
import subprocess
import time
from pathlib import Path

import pytest

from plugin.localstack import processes
from plugin.localstack.processes import LISTEN_PORTS_FROM, Proc, free_port, process_start_time


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


def test_a_free_port_lies_below_the_range_of_outgoing_connections_and_is_handed_out_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An outgoing connection cannot take the port before its server binds it, and two servers of one
    process are never given the same one."""
    assert processes._ephemeral_low() is not None  # Linux tells its range
    monkeypatch.setattr(processes, "_ephemeral_low", lambda: 32768)
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(LISTEN_PORTS_FROM <= port < 32768 for port in ports)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", ports[0]))  # free indeed


def test_a_port_already_bound_is_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    randrange = random.randrange
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port: int = taken.getsockname()[1]
        picks = iter([port, port])  # the bound port twice, then random ones

        def pick(start: int, stop: int) -> int:
            return next(picks, None) or randrange(start, stop)

        monkeypatch.setattr(processes, "_ephemeral_low", lambda: 65536)
        monkeypatch.setattr(processes, "LISTEN_PORTS_FROM", 1024)
        monkeypatch.setattr(random, "randrange", pick)
        got = free_port()
    assert next(picks, None) is None  # both were tried
    assert got != port
