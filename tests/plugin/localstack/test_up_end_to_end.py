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
from pathlib import Path

import boto3
import psutil
import pytest

from plugin.localstack.label_studio import ensure_label_studio_env
from plugin.localstack.plan import make_plan
from plugin.localstack.processes import port_in_use
from plugin.localstack.s3_store import s3_client
from tests.plugin.localstack.e2e_helpers import cli as _cli
from tests.plugin.localstack.e2e_helpers import get_object as _get_object
from tests.plugin.localstack.e2e_helpers import manifests as _manifests
from tests.plugin.localstack.e2e_helpers import port_flags, stack_env
from tests.plugin.localstack.e2e_helpers import running as _running
from tests.plugin.localstack.e2e_helpers import tasks as _tasks


@pytest.mark.e2e
def test_up_doctor_down_up_keeps_every_piece_of_data(tmp_path: Path) -> None:
    ensure_label_studio_env()  # installed once per machine; not part of the timing
    home = tmp_path / "home"
    env = stack_env(home)  # its own Redis: nothing answers on the port, up starts one
    ports = port_flags()
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
