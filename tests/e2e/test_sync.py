"""End to end: Label Studio -> webhooks -> service -> Redis/RQ worker -> manifests in S3.

Everything real: the Label Studio server, Redis, moto's S3 server, ``customlabels serve`` and
``customlabels worker`` as processes. After each step the manifests in S3 must equal, byte for byte,
what ``customlabels convert ls-to-manifest`` makes of Label Studio's own export of the same tasks.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from converters.labelconfig import build_label_config
from tests.builders import choices, rect
from tests.e2e.stack import CUSTOMLABELS, SECRET, Stack, jpeg, stack_env
from tests.realparts import LabelStudioServer

pytestmark = pytest.mark.e2e

CONVERGE_SECONDS = 60
# name -> (stored width, height, EXIF orientation)
IMAGES = {
    "cats/a.jpg": (640, 480, 1),
    "cats/b.jpg": (640, 480, 1),
    "dogs/a.jpg": (320, 240, 6),  # a portrait phone photo: shown 240 x 320
    "dogs/b.jpg": (400, 300, 1),
}


class World:
    """One project in the running stack, and the means to check its manifests."""

    def __init__(self, ls: LabelStudioServer, s3: Any, bucket: str, stack: Stack, workdir: Path) -> None:
        self.ls = ls
        self.client = ls.client()
        self.s3 = s3
        self.bucket = bucket
        self.stack = stack
        self.workdir = workdir
        self.project_id = 0
        self.folder = ""
        self.tasks: dict[str, int] = {}

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [CUSTOMLABELS, *args],
            check=False,
            env=self.stack.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def ref(self, name: str) -> str:
        return f"s3://{self.bucket}/{self.folder}images/{name}"

    def image_meta(self) -> Path:
        path = self.workdir / "meta.jsonl"
        path.write_text(
            "".join(
                json.dumps({"source-ref": self.ref(n), "width": w, "height": h, "orientation": o}) + "\n"
                for n, (w, h, o) in IMAGES.items()
            )
        )
        return path

    def export(self) -> bytes:
        """Label Studio's JSON export of every task (``data.image`` stays the ``s3://`` URL)."""
        export = httpx.get(
            f"{self.ls.url}/api/projects/{self.project_id}/export",
            params={"exportType": "JSON", "download_all_tasks": "true"},
            headers={"Authorization": f"Token {self.ls.token}"},
            timeout=60,
        )
        export.raise_for_status()
        return export.content

    def expected(self) -> dict[str, bytes]:
        """What the core converter makes of Label Studio's export, split by each task's dataset."""
        content = self.export()
        tasks = json.loads(content)
        (self.workdir / "export.json").write_bytes(content)
        config = self.client.projects.get(id=self.project_id).label_config
        (self.workdir / "config.xml").write_text(config)
        out = self.workdir / "expected.manifest"
        self.cli(
            "convert", "ls-to-manifest", str(self.workdir / "export.json"), "-o", str(out),
            "--label-config", str(self.workdir / "config.xml"), "--image-meta", str(self.image_meta()),
        )  # fmt: skip
        dataset = {t["data"]["image"]: t["data"].get("dataset") for t in tasks}
        sides = {"train": b"", "test": b""}
        for line in out.read_bytes().splitlines(keepends=True):
            sides[dataset[json.loads(line)["source-ref"]]] += line
        return sides

    def published(self) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for side in ("train", "test"):
            try:
                body = self.s3.get_object(Bucket=self.bucket, Key=f"{self.folder}{side}.manifest")[
                    "Body"
                ].read()
            except self.s3.exceptions.NoSuchKey:
                body = None
            out[side] = body
        return out

    def converge(self, what: str) -> dict[str, bytes]:
        """Wait until S3 holds what the core makes of Label Studio's current state; return it.

        The expectation is taken afresh each round: the worker may itself change Label Studio (a label
        renamed in the config is written back into the annotations).
        """
        deadline = time.monotonic() + CONVERGE_SECONDS
        while True:
            expected = self.expected()
            published = self.published()
            if published == expected:
                return expected
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert published == expected, f"{what}: S3 did not converge\n{self.stack.logs()}"
        return expected

    def status(self) -> dict[str, Any]:
        return httpx.get(f"{self.stack.url}/api/v1/projects/{self.project_id}/status", timeout=5).json()


@pytest.fixture
def world(
    label_studio: LabelStudioServer, redis_url: str, s3: Any, bucket: str, tmp_path: Path
) -> Iterator[World]:
    port = _free_port()
    env = stack_env(
        ls_url=label_studio.url, ls_token=label_studio.token, redis_url=redis_url, s3_endpoint=s3.endpoint_url,
        bucket=bucket, CUSTOMLABELS_SERVICE_URL=f"http://127.0.0.1:{port}",
    )  # fmt: skip
    stack = Stack(env=env, workdir=tmp_path, port=port)
    stack.start_serve()
    stack.start_worker()
    w = World(label_studio, s3.client, bucket, stack, tmp_path)
    try:
        yield w
    finally:
        stack.stop()
        if w.project_id:
            w.client.projects.delete(id=w.project_id)


def _free_port() -> int:
    from plugin.services import free_port  # noqa: PLC0415

    return free_port()


def _create_project(w: World, title: str) -> None:
    made = json.loads(w.cli("project", "create", "--title", title, "--template", "both", "--json"))
    w.project_id = made["project"]
    w.folder = made["s3"].split("/", 3)[3]
    again = json.loads(w.cli("project", "create", "--title", title, "--template", "both", "--json"))
    assert again["project"] == w.project_id and not again["created"]
    for name, (width, height, orientation) in IMAGES.items():
        w.s3.put_object(
            Bucket=w.bucket, Key=f"{w.folder}images/{name}", Body=jpeg(width, height, orientation=orientation)
        )
    config = build_label_config(choices=["indoor", "outdoor"], boxes=["cat", "dog"])
    w.client.projects.update(id=w.project_id, label_config=config)


def _import(w: World, names_and_sets: list[tuple[str, str]]) -> None:
    w.client.projects.import_tasks(
        id=w.project_id, request=[{"image": w.ref(n), "dataset": s} for n, s in names_and_sets]
    )
    ids = {t["data"]["image"]: t["id"] for t in json.loads(w.export())}
    for name, _ in names_and_sets:
        w.tasks[name] = ids[w.ref(name)]


def _annotate(w: World, name: str, *results: dict[str, Any]) -> int:
    made = w.client.annotations.create(
        id=w.tasks[name], result=list(results), was_cancelled=False, ground_truth=False
    )
    return int(made.id)


def test_manifests_follow_label_studio(world: World) -> None:
    w = world
    _create_project(w, f"E2E sync {uuid.uuid4().hex[:6]}")
    _import(
        w, [("cats/a.jpg", "train"), ("cats/b.jpg", "test"), ("dogs/a.jpg", "train"), ("dogs/b.jpg", "test")]
    )
    w.converge("tasks imported")

    _annotate(w, "cats/a.jpg", choices("indoor"), rect("cat", 10, 20, 30, 40, size=(640, 480)))
    _annotate(w, "cats/b.jpg", choices("indoor"), rect("cat", 5, 5, 50, 50, size=(640, 480)))
    portrait = _annotate(w, "dogs/a.jpg", choices("outdoor"), rect("dog", 12.5, 25, 50, 25, size=(240, 320)))
    _annotate(w, "dogs/b.jpg", choices("outdoor"), rect("dog", 0, 0, 100, 100, size=(400, 300)))
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
    _create_project(w, f"E2E drift {uuid.uuid4().hex[:6]}")
    _import(w, [("cats/a.jpg", "train"), ("dogs/b.jpg", "test")])
    _annotate(w, "cats/a.jpg", choices("indoor"))
    expected = w.converge("annotated")
    w.s3.delete_object(Bucket=w.bucket, Key=f"{w.folder}train.manifest")
    w.s3.put_object(Bucket=w.bucket, Key=f"{w.folder}test.manifest", Body=b"not a manifest\n")
    response = httpx.post(f"{w.stack.url}/api/v1/projects/{w.project_id}/resync", timeout=5)
    assert response.status_code == 202
    assert w.converge("resynced") == expected
    summary = w.s3.get_object(Bucket=w.bucket, Key=f"{w.folder}validation/manifest_summary.json")[
        "Body"
    ].read()
    assert json.loads(summary)["statistics"]["training"]["total_json_lines"] == 1
    assert httpx.post(f"{w.stack.url}/api/v1/projects/999999/resync", timeout=5).status_code == 404
    ready = httpx.get(f"{w.stack.url}/readyz", timeout=10).json()
    assert ready == {"status": "ready", "checks": {"redis": True, "s3": True, "label_studio": True}}


def test_a_stopped_worker_catches_up_on_restart(world: World) -> None:
    w = world
    _create_project(w, f"E2E restart {uuid.uuid4().hex[:6]}")
    _import(w, [("cats/a.jpg", "train"), ("dogs/b.jpg", "test")])
    w.converge("tasks imported")
    w.stack.kill_workers()
    _annotate(w, "cats/a.jpg", choices("indoor"))
    _annotate(w, "dogs/b.jpg", choices("outdoor"), rect("dog", 10, 10, 20, 20, size=(400, 300)))
    w.client.tasks.delete(id=w.tasks["cats/a.jpg"])
    w.stack.start_worker()
    sides = w.converge("worker restarted")
    assert b"cats/a.jpg" not in sides["train"] and b"dogs/b.jpg" in sides["test"]


def test_a_webhook_without_the_secret_changes_nothing(world: World) -> None:
    w = world
    _create_project(w, f"E2E secret {uuid.uuid4().hex[:6]}")
    _import(w, [("cats/a.jpg", "train")])
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
