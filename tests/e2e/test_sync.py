"""End to end: Label Studio -> webhooks -> service -> Redis/RQ worker -> manifests in S3.

Everything real: the Label Studio server, Redis, moto's S3 server, ``customlabels serve`` and
``customlabels worker`` as processes. After each step the manifests in S3 must equal, byte for byte,
what ``customlabels convert ls-to-manifest`` makes of Label Studio's own export of the same tasks.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import httpx
import pytest

from converters.labelconfig import build_label_config
from tests.builders import choices, rect
from tests.e2e.stack import SECRET, World
from tests.signin import bearer

pytestmark = pytest.mark.e2e


def test_manifests_follow_label_studio(world: World) -> None:
    w = world
    w.create_project(f"E2E sync {uuid.uuid4().hex[:6]}")
    w.import_tasks(
        [("cats/a.jpg", "train"), ("cats/b.jpg", "test"), ("dogs/a.jpg", "train"), ("dogs/b.jpg", "test")]
    )
    w.converge("tasks imported")

    w.annotate("cats/a.jpg", choices("indoor"), rect("cat", 10, 20, 30, 40, size=(640, 480)))
    w.annotate("cats/b.jpg", choices("indoor"), rect("cat", 5, 5, 50, 50, size=(640, 480)))
    portrait = w.annotate("dogs/a.jpg", choices("outdoor"), rect("dog", 12.5, 25, 50, 25, size=(240, 320)))
    w.annotate("dogs/b.jpg", choices("outdoor"), rect("dog", 0, 0, 100, 100, size=(400, 300)))
    sides = w.converge("annotations created")
    assert sides["train"].count(b"\n") == 2 and sides["test"].count(b"\n") == 2
    # The portrait photo's box is in pixels of the stored (landscape) image.
    line = next(json.loads(x) for x in sides["train"].splitlines() if b"dogs/a.jpg" in x)
    det = next(v for k, v in line.items() if isinstance(v, dict) and "annotations" in v)
    assert det["image_size"] == [{"width": 320, "height": 240, "depth": 3}]
    assert det["annotations"][0] == {"class_id": 0, "left": 80, "top": 90, "width": 80, "height": 120}

    w.client.annotations.delete(id=portrait)
    w.converge("annotation deleted")

    w.client.tasks.delete(id=w.tasks["cats/b.jpg"])
    sides = w.converge("task deleted")
    assert b"cats/b.jpg" not in sides["test"]

    status = w.status()
    assert status["entries"] == {"train": 2, "test": 1}
    assert status["last_error"] is None

    # A label renamed in Label Studio's settings: the annotations follow, and so do the manifests.
    renamed = build_label_config(choices=["indoor", "outdoor"], boxes=["kitty", "dog"])
    w.client.projects.update(id=w.project_id, label_config=renamed)
    sides = w.converge("label renamed")
    assert b'"kitty"' in sides["train"] and b'"cat"' not in sides["train"] + sides["test"]
    assert "cat" not in json.dumps([a.result for a in w.client.annotations.list(id=w.tasks["cats/a.jpg"])])

    # A label removed from the config leaves every line.
    w.client.projects.update(
        id=w.project_id, label_config=build_label_config(choices=["indoor"], boxes=["kitty", "dog"])
    )
    sides = w.converge("label removed")
    assert b'"outdoor"' not in sides["train"] + sides["test"]
    assert b"dogs/b.jpg" in sides["test"]  # its box stays


def test_resync_corrects_drift_in_s3(world: World) -> None:
    w = world
    w.create_project(f"E2E drift {uuid.uuid4().hex[:6]}")
    w.import_tasks([("cats/a.jpg", "train"), ("dogs/b.jpg", "test")])
    w.annotate("cats/a.jpg", choices("indoor"))
    expected = w.converge("annotated")
    w.s3.delete_object(Bucket=w.bucket, Key=f"{w.folder}train.manifest")
    w.s3.put_object(Bucket=w.bucket, Key=f"{w.folder}test.manifest", Body=b"not a manifest\n")
    response = httpx.post(f"{w.stack.url}/api/v1/projects/{w.project_id}/resync", timeout=5, headers=bearer())
    assert response.status_code == 202
    assert w.converge("resynced") == expected
    summary = w.s3.get_object(Bucket=w.bucket, Key=f"{w.folder}validation/manifest_summary.json")[
        "Body"
    ].read()
    assert json.loads(summary)["statistics"]["training"]["total_json_lines"] == 1
    assert (
        httpx.post(f"{w.stack.url}/api/v1/projects/999999/resync", timeout=5, headers=bearer()).status_code
        == 404
    )
    ready = httpx.get(f"{w.stack.url}/readyz", timeout=10).json()
    assert ready == {"status": "ready", "checks": {"redis": True, "s3": True, "label_studio": True}}


def test_a_stopped_worker_catches_up_on_restart(world: World) -> None:
    w = world
    w.create_project(f"E2E restart {uuid.uuid4().hex[:6]}")
    w.import_tasks([("cats/a.jpg", "train"), ("dogs/b.jpg", "test")])
    w.converge("tasks imported")
    w.stack.kill_workers()
    w.annotate("cats/a.jpg", choices("indoor"))
    w.annotate("dogs/b.jpg", choices("outdoor"), rect("dog", 10, 10, 20, 20, size=(400, 300)))
    w.client.tasks.delete(id=w.tasks["cats/a.jpg"])
    worker = w.stack.start_worker()
    sides = w.converge("worker restarted")
    assert b"cats/a.jpg" not in sides["train"] and b"dogs/b.jpg" in sides["test"]
    # The worker runs below Label Studio's priority (CUSTOMLABELS_WORKER_NICE, 10 by default); the
    # service, which Label Studio waits on for each webhook, does not.
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, worker.pid) == max(10, own)
    assert w.stack.serve is not None and os.getpriority(os.PRIO_PROCESS, w.stack.serve.pid) == own


def test_a_webhook_without_the_secret_changes_nothing(world: World) -> None:
    w = world
    w.create_project(f"E2E secret {uuid.uuid4().hex[:6]}")
    w.import_tasks([("cats/a.jpg", "train")])
    before = w.converge("tasks imported")
    status = w.status()
    body = {
        "action": "TASKS_DELETED",
        "project": {"id": w.project_id},
        "tasks": [{"id": w.tasks["cats/a.jpg"]}],
    }
    for headers in ({}, {"X-Customlabels-Secret": SECRET[:-1] + "x"}):
        response = httpx.post(f"{w.stack.url}/webhooks/label-studio", json=body, headers=headers, timeout=5)
        assert response.status_code == 401
    time.sleep(2)
    assert w.published() == before
    assert w.status()["pending_events"] == status["pending_events"] == 0
