"""A local stack that heals, end to end (real Label Studio, s3rver, Redis, service and worker):

- under a foreground ``up`` whose output goes into a pipe, ``kill -9`` of the worker and of the service:
  both come back, a publish after that works, ``doctor`` lists the restarts; then the pipe's reader dies
  (``up |& tee log``, Ctrl-C: ``tee`` goes first) and SIGINT reaches up's process group: every process
  ever recorded is gone, and ``up`` exits cleanly;
- the same under ``up --detach`` (its background supervisor restarts them), then ``down`` stops every
  part and the supervisor.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from plugin.localstack.http_calls import http_get
from plugin.localstack.label_studio import ensure_label_studio_env
from plugin.localstack.plan import make_plan
from plugin.localstack.s3_store import s3_client
from tests.plugin.localstack.e2e_helpers import (
    cli,
    delete_task,
    manifests,
    port_flags,
    running,
    stack_env,
    tasks,
)

HEALED = ("worker", "service")


def _state(home: Path) -> dict[str, Any]:
    return dict(json.loads((home / "state.json").read_text()))


def _pids(home: Path) -> dict[str, int]:
    return {name: int(proc["pid"]) for name, proc in _state(home)["processes"].items()}


def _kill_and_wait_for_restarts(home: Path, service_url: str, seen: set[int]) -> None:
    """``kill -9`` each healed part; wait until the record names a new, running process for each and
    the service answers again."""
    before = _pids(home)
    for name in HEALED:
        os.kill(before[name], signal.SIGKILL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        now = _pids(home)
        seen.update(now.values())
        if all(now[n] != before[n] and running(now[n]) for n in HEALED):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"not restarted: {before} -> {_pids(home)}")
    while time.monotonic() < deadline:
        try:
            if http_get(f"{service_url}/readyz", timeout=5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail("the restarted service is not ready")


def _publish_works(home: Path, env: dict[str, str], info: dict[str, Any], ports: list[str]) -> None:
    """Delete a training task in Label Studio: the restarted service and worker take it out of the
    manifest; doctor lists each restart and finds nothing failing."""
    ls, token, demo = info["label_studio"]["url"], info["label_studio"]["token"], info["demo"]
    s3 = s3_client(make_plan(home, s3_port=int(ports[5]), env={}))
    bucket, folder = info["s3"]["bucket"], demo["s3"].split("/", 3)[3]
    assert len(manifests(s3, bucket, folder)["train"]) == 5
    gone = next(t for t in tasks(ls, token, demo["project"]) if t[2] == "train")
    delete_task(ls, token, gone[0])
    after = manifests(s3, bucket, folder, counts=(4, 2))
    assert len(after["train"]) == 4 and gone[1] not in after["train"], after

    doctor = cli(env, "doctor", "--json", timeout=120)
    report = json.loads(doctor.stdout)
    assert doctor.returncode == 0 and report["ok"], [c for c in report["checks"] if c["status"] != "ok"]
    restarts = next(c for c in report["checks"] if c["name"] == "restarts")
    assert "worker 1 " in restarts["detail"] and "service 1 " in restarts["detail"], restarts
    assert "killed by SIGKILL" in restarts["detail"] or "exit code unknown" in restarts["detail"]


@pytest.mark.e2e
def test_a_foreground_up_heals_and_ctrl_c_into_a_closed_pipe_stops_everything(tmp_path: Path) -> None:
    ensure_label_studio_env()
    home = tmp_path / "home"
    env, ports = stack_env(home), port_flags()
    out = tmp_path / "out.txt"
    read, write = os.pipe()
    with out.open("wb") as sink:
        reader = subprocess.Popen(["cat"], stdin=read, stdout=sink, start_new_session=True)  # plays tee
    up = subprocess.Popen(
        [sys.executable, "-m", "plugin.cli", "up", "--json", *ports],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=write,
        stderr=write,  # as `up |& tee log`: its messages go into the pipe too
        start_new_session=True,  # its own process group, as a shell job has
    )
    os.close(read)
    os.close(write)
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 300
        while '"status": "started"' not in out.read_text() and up.poll() is None:
            assert time.monotonic() < deadline, out.read_text()[-3000:]
            time.sleep(0.5)
        info = json.loads(
            next(line for line in out.read_text().splitlines() if '"status": "started"' in line)
        )
        seen.update(_pids(home).values())
        assert set(_pids(home)) == {"s3", "redis", "label_studio", "service", "worker"}

        _kill_and_wait_for_restarts(home, info["service"]["url"], seen)
        assert "starting it again in 1 s" in out.read_text()
        _publish_works(home, env, info, ports)
        seen.update(_pids(home).values())

        reader.kill()  # the pipe's reader goes first, as Ctrl-C ends tee at once
        reader.wait(10)
        os.killpg(up.pid, signal.SIGINT)
        assert up.wait(120) == 0
        assert not [pid for pid in seen if running(pid)]
        assert not (home / "state.json").exists()
    finally:
        for process in (reader, up):
            if process.poll() is None:
                process.kill()
                process.wait(10)
        cli(env, "down", timeout=120)
        for pid in seen:  # nothing may outlive the test, whatever failed
            if running(pid):
                os.killpg(pid, signal.SIGKILL)


@pytest.mark.e2e
def test_a_detached_stack_heals_and_down_stops_its_supervisor(tmp_path: Path) -> None:
    ensure_label_studio_env()
    home = tmp_path / "home"
    env, ports = stack_env(home), port_flags()
    seen: set[int] = set()
    try:
        up = cli(env, "up", "--detach", "--json", *ports)
        assert up.returncode == 0, up.stderr
        info = json.loads(up.stdout)
        seen.update(info["pids"].values())
        supervisor = _state(home)["supervisor"]
        assert supervisor is not None and running(supervisor["pid"])
        seen.add(supervisor["pid"])

        _kill_and_wait_for_restarts(home, info["service"]["url"], seen)
        _publish_works(home, env, info, ports)
        seen.update(_pids(home).values())
        log = (home / "logs" / "supervisor.log").read_text()
        assert "worker" in log and "starting it again in 1 s" in log

        down = cli(env, "down", "--json", timeout=120)
        assert down.returncode == 0, down.stderr
        assert sorted(json.loads(down.stdout)["stopped"]) == sorted(info["pids"])
        assert not [pid for pid in seen if running(pid)]
        assert not (home / "state.json").exists()
    finally:
        cli(env, "down", timeout=120)
        for pid in seen:
            if running(pid):
                os.killpg(pid, signal.SIGKILL)
