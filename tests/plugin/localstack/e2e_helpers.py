"""What the end-to-end tests of the local stack share: running ``customlabels`` as a user would, a
clean environment for a stack in a temporary home, reading the demo's tasks and manifests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from botocore.exceptions import ResponseStreamingError

from plugin.localstack.http_calls import http_get
from plugin.localstack.processes import free_port, process_start_time


def cli(env: dict[str, str], *args: str, timeout: float = 360) -> subprocess.CompletedProcess[str]:
    """``customlabels ARGS`` in a process of its own, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "plugin.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def stack_env(home: Path) -> dict[str, str]:
    """Our environment without any setting of ours, AWS's or Label Studio's; the stack in ``home``
    with its own Redis (nothing answers on the port: ``up`` starts one) and a short debounce."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTOMLABELS_", "AWS_", "LABEL_STUDIO"))}
    env.update(
        CUSTOMLABELS_HOME=str(home),
        CUSTOMLABELS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
        CUSTOMLABELS_DEBOUNCE_SECONDS="0.2",
    )
    return env


def port_flags() -> list[str]:
    """``--ls-port``, ``--port`` and ``--s3-port`` with free ports."""
    return ["--ls-port", str(free_port()), "--port", str(free_port()), "--s3-port", str(free_port())]


def get_object(s3: Any, bucket: str, key: str) -> bytes | None:
    """An object's body, None when there is none."""
    try:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def manifests(
    s3: Any, bucket: str, folder: str, *, counts: tuple[int, int] = (5, 2), timeout: float = 60
) -> dict[str, list[str]]:
    """The source-refs of train.manifest and test.manifest once they hold ``counts`` entries (the demo:
    5 and 2), or when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        refs: dict[str, list[str]] = {}
        try:
            for side in ("train", "test"):
                body = get_object(s3, bucket, f"{folder}{side}.manifest") or b""
                refs[side] = sorted(json.loads(line)["source-ref"] for line in body.splitlines())
        except ResponseStreamingError:
            # s3rver rewrites an object's file in place: a read during a publish may end short.
            refs = {"train": [], "test": []}
        if (len(refs["train"]), len(refs["test"])) == counts or time.monotonic() > deadline:
            return refs
        time.sleep(0.5)


def tasks(ls_url: str, token: str, project: int) -> list[tuple[int, str, str]]:
    """(id, image, dataset) of every task of ``project``, read through Label Studio's export."""
    status, body = http_get(
        f"{ls_url}/api/projects/{project}/export?exportType=JSON&download_all_tasks=true",
        token=token,
        timeout=30,
    )
    assert status == 200, body[:300]
    return sorted((t["id"], t["data"]["image"], t["data"]["dataset"]) for t in json.loads(body))


def delete_task(ls_url: str, token: str, task: int) -> None:
    """Delete a task in Label Studio as an annotator's bulk action would (it sends TASKS_DELETED)."""
    request = urllib.request.Request(f"{ls_url}/api/tasks/{task}/", method="DELETE")
    request.add_header("Authorization", f"Token {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        assert response.status == 204


def running(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie does not)."""
    return process_start_time(pid) is not None
