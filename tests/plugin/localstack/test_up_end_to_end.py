"""``customlabels up`` / ``down`` / ``doctor`` end to end.

The test runs the real thing as a user would (``customlabels up --detach`` in a temporary home, on free
ports, with its own Redis), checks the demo project in Label Studio and its manifests in the store,
``doctor``, ``down``, a second ``up`` that finds every piece of data again, and that no process it started
is left.
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

import boto3
import psutil
import pytest

from plugin.localstack.http_calls import http_get
from plugin.localstack.label_studio import ensure_label_studio_env
from plugin.localstack.plan import make_plan
from plugin.localstack.processes import free_port, port_in_use, process_start_time
from plugin.localstack.s3_store import s3_client

E2E_SECONDS = 240


def _cli(env: dict[str, str], *args: str, timeout: float = 360) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plugin.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _get_object(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def _manifests(s3: Any, bucket: str, folder: str, *, timeout: float = 60) -> dict[str, list[str]]:
    """The source-refs of train.manifest and test.manifest once both hold every demo image."""
    deadline = time.monotonic() + timeout
    while True:
        refs: dict[str, list[str]] = {}
        for side in ("train", "test"):
            body = _get_object(s3, bucket, f"{folder}{side}.manifest") or b""
            refs[side] = sorted(json.loads(line)["source-ref"] for line in body.splitlines())
        if (len(refs["train"]), len(refs["test"])) == (5, 2) or time.monotonic() > deadline:
            return refs
        time.sleep(0.5)


def _tasks(ls_url: str, token: str, project: int) -> list[tuple[int, str, str]]:
    status, body = http_get(
        f"{ls_url}/api/projects/{project}/export?exportType=JSON&download_all_tasks=true",
        token=token,
        timeout=30,
    )
    assert status == 200, body[:300]
    return sorted((t["id"], t["data"]["image"], t["data"]["dataset"]) for t in json.loads(body))


@pytest.mark.e2e
def test_up_doctor_down_up_keeps_every_piece_of_data(tmp_path: Path) -> None:
    ensure_label_studio_env()  # installed once per machine; not part of the timing
    began = time.monotonic()
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTOMLABELS_", "AWS_", "LABEL_STUDIO"))}
    env.update(
        CUSTOMLABELS_HOME=str(home),
        CUSTOMLABELS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # nothing there: up starts one
        CUSTOMLABELS_DEBOUNCE_SECONDS="0.2",
    )
    ports = ["--ls-port", str(free_port()), "--port", str(free_port()),
             "--s3-port", str(free_port())]  # fmt: skip
    started: list[int] = []
    try:
        up = _cli(env, "up", "--detach", "--json", *ports)
        assert up.returncode == 0, up.stderr
        info = json.loads(up.stdout)
        started += info["pids"].values()
        assert set(info["pids"]) == {"s3", "redis", "label_studio", "service", "worker"}
        assert info["redis"]["started"] and info["s3"]["embedded"]
        assert (home / "secrets.json").stat().st_mode & 0o777 == 0o600
        ls_command = json.loads((home / "state.json").read_text())["processes"]["label_studio"]["command"]
        assert ls_command[0].endswith("/gunicorn") and "--workers=2" in ls_command  # the default
        assert len(psutil.Process(info["pids"]["label_studio"]).children()) == 2
        ls, token, demo = info["label_studio"]["url"], info["label_studio"]["token"], info["demo"]
        tasks = _tasks(ls, token, demo["project"])
        assert [d for _, _, d in tasks].count("train") == 5 and [d for _, _, d in tasks].count("test") == 2

        s3 = s3_client(make_plan(home, s3_port=int(ports[5]), env={}))
        bucket, folder = info["s3"]["bucket"], demo["s3"].split("/", 3)[3]
        manifests = _manifests(s3, bucket, folder)
        assert (len(manifests["train"]), len(manifests["test"])) == (5, 2), manifests
        assert {r for side in manifests.values() for r in side} == {image for _, image, _ in tasks}
        summary = _get_object(s3, bucket, f"{folder}validation/manifest_summary.json")
        assert summary is not None and json.loads(summary)["statistics"]["testing"]["total_json_lines"] == 2

        # The README's boto3 example, with the key pair `up` prints beside the S3 key.
        rek = boto3.client(
            "rekognition", endpoint_url=info["service"]["url"], region_name="us-east-1",
            aws_access_key_id=info["service"]["api_access_key_id"],
            aws_secret_access_key=info["service"]["api_secret_access_key"],
        )  # fmt: skip
        names = [p["ProjectArn"] for p in rek.describe_projects()["ProjectDescriptions"]]
        assert any(":project/demo-shapes/" in arn for arn in names), names  # the demo project

        doctor = _cli(env, "doctor", "--json", timeout=120)
        report = json.loads(doctor.stdout)
        assert doctor.returncode == 0 and report["ok"], [c for c in report["checks"] if c["status"] != "ok"]

        down = _cli(env, "down", "--json", timeout=120)
        assert down.returncode == 0, down.stderr
        assert sorted(json.loads(down.stdout)["stopped"]) == sorted(info["pids"])
        assert not any(_running(pid) for pid in started)
        assert not (home / "state.json").exists()

        again = _cli(env, "up", "--detach", "--json", *ports)
        assert again.returncode == 0, again.stderr
        info2 = json.loads(again.stdout)
        started += info2["pids"].values()
        assert info2["status"] == "started" and info2["demo"]["project"] == demo["project"]
        assert info2["label_studio"]["token"] == token
        assert _tasks(ls, token, demo["project"]) == tasks  # same tasks, same ids: nothing made twice
        assert _manifests(s3, bucket, folder) == manifests
        assert _cli(env, "up", "--detach", "--json", *ports).stdout.count('"already running"') == 1

        assert _cli(env, "down", timeout=120).returncode == 0
        assert not any(_running(pid) for pid in started)
        for port in ports[1::2]:
            assert not port_in_use(int(port))
    finally:
        _cli(env, "down", timeout=120)
        for pid in started:  # nothing may outlive the test, whatever failed
            if _running(pid):
                os.killpg(pid, signal.SIGKILL)
    assert time.monotonic() - began < E2E_SECONDS


def _running(pid: int) -> bool:
    return process_start_time(pid) is not None
