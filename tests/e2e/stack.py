"""The sync service and its worker as real processes (``customlabels serve`` / ``customlabels worker``),
and a project in them (:class:`World`) whose manifests are checked against the core converter."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from PIL import Image

from converters.labelconfig import build_label_config
from plugin.localstack.processes import log_tail
from tests.realparts import LabelStudioServer
from tests.signin import SERVICE_KEY, bearer

CUSTOMLABELS = str(Path(sys.executable).with_name("customlabels"))
SECRET = "e2e-webhook-secret-0123456789abcdef"


def jpeg(
    width: int, height: int, *, orientation: int = 1, color: tuple[int, int, int] = (200, 80, 40)
) -> bytes:
    """A JPEG of ``width`` x ``height`` stored pixels, with an EXIF orientation tag unless it is 1."""
    image = Image.new("RGB", (width, height), color)
    buffer = io.BytesIO()
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(buffer, "JPEG", exif=exif.tobytes())
    else:
        image.save(buffer, "JPEG")
    return buffer.getvalue()


@dataclass
class Stack:
    """``serve`` and ``worker`` processes sharing one environment; logs under ``workdir``."""

    env: dict[str, str]
    workdir: Path
    port: int
    serve: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The service's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def _spawn(self, *args: str, log: str) -> subprocess.Popen[bytes]:
        out = open(self.workdir / log, "ab")  # noqa: SIM115 (the process owns it)
        return subprocess.Popen(
            [CUSTOMLABELS, *args], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def start_serve(self) -> None:
        """Start the service and wait until it answers /healthz."""
        self.serve = self._spawn("serve", "--port", str(self.port), "--workers", "1", log="serve.log")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.serve.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"the service did not start:\n{log_tail(self.workdir / 'serve.log')}")

    def start_worker(self) -> subprocess.Popen[bytes]:
        """Start one worker process."""
        process = self._spawn("worker", log="worker.log")
        self.workers.append(process)
        return process

    def kill_worker(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL one worker and its RQ work-horse (a child in a process group of its own), as if the
        machine lost them."""
        children = _descendants(process.pid)
        os.killpg(process.pid, signal.SIGKILL)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        process.wait(10)
        self.workers.remove(process)

    def kill_workers(self) -> None:
        """Stop every worker at once (SIGKILL: as if the machine lost it)."""
        for process in list(self.workers):
            self.kill_worker(process)

    def stop_serve(self) -> None:
        """Stop the service (the workers go on)."""
        if self.serve is not None:
            _end(self.serve)
            self.serve = None

    def stop(self) -> None:
        """Stop everything this stack started (work-horses too: they leave the worker's process group)."""
        for process in self.workers:
            _end(process)
        self.workers.clear()
        self.stop_serve()

    def logs(self) -> str:
        """The tails of the service's and the worker's logs (for failure messages)."""
        return "\n".join(
            f"--- {name}\n{log_tail(self.workdir / name, 60)}"
            for name in ("serve.log", "worker.log")
            if (self.workdir / name).exists()
        )


def _end(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process's group (SIGKILL after 10 s), then its descendants that left the group."""
    children = _descendants(process.pid)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def stack_env(
    *, ls_url: str, ls_token: str, redis_url: str, s3_endpoint: str, bucket: str, **extra: Any
) -> dict[str, str]:
    """The environment of ``serve`` and ``worker`` for these parts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTOMLABELS_", "AWS_", "LABEL_STUDIO"))}
    env.update(
        CUSTOMLABELS_LS_URL=ls_url,
        CUSTOMLABELS_LS_API_KEY=ls_token,
        CUSTOMLABELS_REDIS_URL=redis_url,
        CUSTOMLABELS_S3_ENDPOINT=s3_endpoint,
        CUSTOMLABELS_BUCKET=bucket,
        CUSTOMLABELS_PREFIX="customlabels",
        CUSTOMLABELS_WEBHOOK_SECRET=SECRET,
        CUSTOMLABELS_DEBOUNCE_SECONDS="0.2",
        CUSTOMLABELS_RECONCILE_SECONDS="3600",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        CUSTOMLABELS_SERVICE_API_KEY=SERVICE_KEY,  # scripts (the tests) call the REST API with it
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


CONVERGE_SECONDS = 60
# name -> (stored width, height, EXIF orientation)
IMAGES = {
    "cats/a.jpg": (640, 480, 1),
    "cats/b.jpg": (640, 480, 1),
    "dogs/a.jpg": (320, 240, 6),  # a portrait phone photo: shown 240 x 320
    "dogs/b.jpg": (400, 300, 1),
}
CONFIG = build_label_config(choices=["indoor", "outdoor"], boxes=["cat", "dog"])


class World:
    """One project in the running stack, and the means to check its manifests.

    ``images`` (name under the project's ``images/`` folder -> stored size and orientation) are the
    images the tasks may show; their facts go to the converter as ``--image-meta``.
    """

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
        self.images: dict[str, tuple[int, int, int]] = dict(IMAGES)

    def cli(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            [CUSTOMLABELS, *args],
            check=False,
            env=env or self.stack.env,
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
                for n, (w, h, o) in self.images.items()
            )
        )
        return path

    def export(self) -> bytes:
        """Label Studio's JSON export of every task (``data.image`` stays the ``s3://`` URL), with the
        predictions whole (the export itself lists them by id only)."""
        auth = {"Authorization": f"Token {self.ls.token}"}
        export = httpx.get(
            f"{self.ls.url}/api/projects/{self.project_id}/export",
            params={"exportType": "JSON", "download_all_tasks": "true"},
            headers=auth,
            timeout=60,
        )
        export.raise_for_status()
        tasks = json.loads(export.content)
        if not any(t.get("predictions") for t in tasks):
            return export.content
        found = httpx.get(
            f"{self.ls.url}/api/predictions/", params={"project": self.project_id}, headers=auth, timeout=60
        )
        found.raise_for_status()
        by_id = {p["id"]: p for p in found.json()}
        for t in tasks:
            t["predictions"] = [
                by_id.get(p, p) if isinstance(p, int) else p for p in t.get("predictions") or []
            ]
        return json.dumps(tasks).encode()

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

    def converge(
        self, what: str, timeout: float = CONVERGE_SECONDS, *, idle: Callable[[], bool] | None = None
    ) -> dict[str, bytes]:
        """Wait until S3 holds what the core makes of Label Studio's current state; return it.

        The expectation is taken afresh each round: the worker may itself change Label Studio (a label
        renamed in the config is written back into the annotations). With ``idle``, a round counts only
        when it says the service has nothing left to do (else S3 might match only until the events still
        waiting are published).
        """
        deadline = time.monotonic() + timeout
        while True:
            if idle is not None and not idle():
                if time.monotonic() > deadline:
                    raise AssertionError(f"{what}: the service never went idle\n{self.stack.logs()}")
                time.sleep(0.1)
                continue
            expected = self.expected()
            published = self.published()
            if published == expected:
                return expected
            if time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert published == expected, (
            f"{what}: S3 did not converge\n{describe(expected, published)}\n{self.stack.logs()}"
        )
        return expected

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = httpx.get(
            f"{self.stack.url}/api/v1/projects/{self.project_id}/status", timeout=5, headers=bearer()
        ).json()
        return status

    def create_project(self, title: str, *, env: dict[str, str] | None = None) -> None:
        """``customlabels project create`` (twice: the second finds the first), the images, the config."""
        made = json.loads(
            self.cli("project", "create", "--title", title, "--template", "both", "--json", env=env)
        )
        self.project_id = made["project"]
        self.folder = made["s3"].split("/", 3)[3]
        again = json.loads(
            self.cli("project", "create", "--title", title, "--template", "both", "--json", env=env)
        )
        assert again["project"] == self.project_id and not again["created"]
        for name, (width, height, orientation) in self.images.items():
            self.s3.put_object(
                Bucket=self.bucket,
                Key=f"{self.folder}images/{name}",
                Body=jpeg(width, height, orientation=orientation),
            )
        self.client.projects.update(id=self.project_id, label_config=CONFIG)

    def import_tasks(self, names_and_sets: list[tuple[str, str]]) -> None:
        """Import one task per image, with its dataset; remember the task ids."""
        self.client.projects.import_tasks(
            id=self.project_id, request=[{"image": self.ref(n), "dataset": s} for n, s in names_and_sets]
        )
        ids = {t["data"]["image"]: t["id"] for t in json.loads(self.export())}
        for name, _ in names_and_sets:
            self.tasks[name] = ids[self.ref(name)]

    def annotate(self, name: str, *results: dict[str, Any]) -> int:
        made = self.client.annotations.create(
            id=self.tasks[name], result=list(results), was_cancelled=False, ground_truth=False
        )
        return int(made.id)


def describe(expected: dict[str, bytes], published: dict[str, bytes | None]) -> str:
    """Which source-refs are lost (expected, not published), phantom (published, not expected) or
    different, per dataset: a short account of a failed comparison."""
    out = []
    for side in ("train", "test"):
        want = _by_ref(expected.get(side) or b"")
        have = _by_ref(published.get(side) or b"")
        lost = sorted(set(want) - set(have))
        phantom = sorted(set(have) - set(want))
        changed = sorted(r for r in set(want) & set(have) if want[r] != have[r])
        out.append(
            f"{side}: {len(lost)} lost {lost[:5]}, {len(phantom)} phantom {phantom[:5]}, "
            f"{len(changed)} different {changed[:5]}"
        )
        for ref in changed[:1]:  # how the first one differs
            out.append(f"  expected {want[ref][:400]!r}\n  in S3    {have[ref][:400]!r}")
    return "\n".join(out)


def _by_ref(body: bytes) -> dict[str, bytes]:
    out = {}
    for line in body.splitlines():
        try:
            out[str(json.loads(line).get("source-ref"))] = line
        except ValueError:
            out[f"<unparsable {line[:40]!r}>"] = line
    return out


@contextmanager
def open_world(
    ls: LabelStudioServer, s3: Any, bucket: str, workdir: Path, env: dict[str, str], port: int, *,
    workers: int = 1,
) -> Iterator[World]:  # fmt: skip
    """A running stack (``serve`` + ``workers`` workers) and a World in it; everything stopped after,
    and the World's Label Studio project deleted."""
    stack = Stack(env=env, workdir=workdir, port=port)
    world = World(ls, s3, bucket, stack, workdir)
    try:
        stack.start_serve()
        for _ in range(workers):
            stack.start_worker()
        yield world
    finally:
        stack.stop()
        if world.project_id:
            with contextlib.suppress(Exception):  # a test that stopped Label Studio may leave it away
                world.client.projects.delete(id=world.project_id)
