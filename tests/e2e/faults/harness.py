"""What every fault test shares: the stack behind an S3 proxy, a project with a pool of images, a stream
of changes, a watcher of the objects in S3, a private Label Studio, and the results file.

Convergence is the check of ``tests/e2e/stack.World.converge``: the manifests in S3 equal, byte for byte,
what the core converter makes of Label Studio's export at that moment (zero lost, zero phantom, zero
different lines). On top of it, :class:`Watcher` reads the objects back all along the test: every object
ever seen must be whole (each line parses; its bytes are exactly one body S3 accepted).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue

from plugin.localstack.label_studio import label_studio_env, start_label_studio
from plugin.localstack.processes import free_port
from sync_service.edges.state import ProjectState
from tests.builders import choices
from tests.e2e.faults.hookproxy import HookProxy
from tests.e2e.faults.s3proxy import S3Proxy
from tests.e2e.faults.stream import ChangeStream
from tests.e2e.stack import World, open_world, stack_env
from tests.realparts import LabelStudioServer

RESULTS = Path(__file__).resolve().parents[3] / "bench" / "results" / "faults.json"
# Stored size and EXIF orientation of the pool's images, in turn.
SIZES = ((640, 480, 1), (320, 240, 6), (400, 300, 1), (300, 400, 1))
MANIFESTS = ("train.manifest", "test.manifest")
SUMMARY = "validation/manifest_summary.json"


# --------------------------------------------------------------------------------------------- watcher


class Watcher:
    """Reads the project's objects straight from S3 (not through the proxy) every ``period`` seconds
    and keeps every distinct body seen."""

    def __init__(self, s3: Any, bucket: str, keys: list[str], period: float = 0.1) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.keys = keys
        self.period = period
        self.seen: dict[str, set[bytes]] = {key: set() for key in keys}
        self.reads = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Watcher:
        self._thread = threading.Thread(target=self._run, daemon=True, name="s3-watcher")
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            for key in self.keys:
                try:
                    body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                except self.s3.exceptions.NoSuchKey:
                    continue
                except Exception:  # noqa: BLE001 - moto busy: the next round reads again
                    continue
                self.reads += 1
                self.seen[key].add(body)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def check(self, written: dict[str, list[bytes]]) -> int:
        """Assert that every object seen was whole; return how many distinct versions were seen."""
        versions = 0
        for key, bodies in self.seen.items():
            accepted = set(written.get(key, ()))
            for body in bodies:
                versions += 1
                assert body in accepted, f"{key}: read back {len(body)} bytes that no PutObject wrote"
                if key.endswith(".manifest"):
                    assert body == b"" or body.endswith(b"\n"), f"{key}: the last line is cut"
                    for line in body.splitlines():
                        assert "source-ref" in json.loads(line), f"{key}: a line without source-ref"
                else:
                    json.loads(body)
        return versions


# ----------------------------------------------------------------------------------------------- world


@dataclass
class FaultWorld:
    """A project in a running stack whose S3 goes through ``s3proxy`` (and webhooks through ``hooks``)."""

    world: World
    s3proxy: S3Proxy
    watcher: Watcher
    stream: ChangeStream
    redis: Redis
    hooks: HookProxy | None = None
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def lock_key(self) -> str:
        return f"cl:p:{self.world.project_id}:lock"

    def idle(self, *, strict: bool = False) -> bool:
        """No event waiting to be published, none taken by a publish that has not finished; ``strict``:
        nothing at all under way or queued either (a reconcile may be running while S3 is slow)."""
        state = ProjectState(self.redis, self.world.project_id)
        try:
            keys = [
                state.k_dirty,
                state.k_gone,
                state.k_gone_ann,
                state.k_full,
                state.k_payloads,
                *state.k_taken,
            ]
            if strict:
                keys.append(state.k_lock)
            waiting = self.redis.exists(*keys)
            queue = Queue(self.world.stack.env["CUSTOMLABELS_QUEUE"], connection=self.redis)
            queued = queue.count if strict else 0
        except RedisError:
            return False
        return waiting == 0 and queued == 0

    def converge(self, what: str, timeout: float) -> float:
        """Wait until the service is idle and S3 equals the core's output of Label Studio's current
        state; return the seconds it took."""
        started = time.monotonic()
        self.world.converge(what, timeout, idle=self.idle)
        return round(time.monotonic() - started, 2)

    def finish(self, scenario: str, **facts: Any) -> None:
        """The checks every scenario ends with, then its line in the results file."""
        self.watcher.stop()
        versions = self.watcher.check(self.s3proxy.written)
        deadline = time.monotonic() + 30  # a reconcile may be publishing right now: it must end
        while not self.idle(strict=True):
            assert time.monotonic() < deadline, "the publish lock or events stay behind"
            time.sleep(0.1)
        status = self.world.status()
        assert status.get("last_error") is None, status
        record(
            scenario,
            **facts,
            changes=self.stream.total,
            change_errors=sum(self.stream.errors.values()),
            s3_versions_read_back=versions,
            s3_requests=dict(self.s3proxy.counts),
            **({"webhooks": dict(self.hooks.counts)} if self.hooks else {}),
        )


def pool_names(count: int) -> dict[str, tuple[int, int, int]]:
    """``count`` image names under ``pool/``, sizes taken in turn from :data:`SIZES`."""
    return {f"pool/{i:03d}.jpg": SIZES[i % len(SIZES)] for i in range(count)}


@contextmanager
def fault_world(
    ls: LabelStudioServer,
    s3: Any,
    bucket: str,
    workdir: Path,
    *,
    redis_url: str,
    title: str,
    workers: int = 1,
    reconcile_seconds: float = 5.0,
    hook_proxy: bool = False,
    pool: int = 40,
    seed: int = 0,
) -> Iterator[FaultWorld]:
    """Start proxies and the stack, make the project (webhook at the hook proxy when asked), start the
    watcher; stop everything after (the project is deleted from Label Studio)."""
    proxy = S3Proxy(s3.endpoint_url, seed=seed).start()
    port = free_port()
    hooks = HookProxy(f"http://127.0.0.1:{port}", seed=seed).start() if hook_proxy else None
    env = stack_env(
        ls_url=ls.url,
        ls_token=ls.token,
        redis_url=redis_url,
        s3_endpoint=proxy.url,
        bucket=bucket,
        CUSTOMLABELS_SERVICE_URL=hooks.url if hooks else f"http://127.0.0.1:{port}",
        CUSTOMLABELS_RECONCILE_SECONDS=reconcile_seconds,
        CUSTOMLABELS_QUEUE=f"faults-{uuid.uuid4().hex[:8]}",
    )
    redis = Redis.from_url(redis_url)
    watcher: Watcher | None = None
    stream: ChangeStream | None = None
    try:
        with open_world(ls, s3.client, bucket, workdir, env, port, workers=workers) as world:
            world.images = pool_names(pool)
            world.create_project(f"{title} {uuid.uuid4().hex[:6]}")
            refs: dict[str, tuple[int, int] | None] = {
                world.ref(name): ((h, w) if o in (5, 6, 7, 8) else (w, h))
                for name, (w, h, o) in world.images.items()
            }
            keys = [f"{world.folder}{name}" for name in (*MANIFESTS, SUMMARY)]
            watcher = Watcher(s3.client, bucket, keys).start()
            stream = ChangeStream(ls.url, ls.token, world.project_id, refs, seed=seed)
            yield FaultWorld(world, proxy, watcher, stream, redis, hooks)
    finally:
        if stream is not None:
            stream.stop()
        if watcher is not None:
            watcher.stop()
        if hooks is not None:
            hooks.stop()
        proxy.stop()
        redis.close()


# ------------------------------------------------------------------------------ a private Label Studio


@dataclass
class PrivateLabelStudio:
    """A Label Studio of one test, on a copy of the session server's database (no 20-35 s migration);
    :meth:`stop` and :meth:`start` keep its port and data dir."""

    server: LabelStudioServer
    port: int
    data_dir: Path
    log_path: Path

    def stop(self) -> None:
        self.server.process.stop()

    def cut_short_save(self, project_id: int) -> int:
        """Leave in the stopped server's database what a save cut short leaves when the process dies
        between ``Annotation.save``'s row and its task's ``updated_at`` (and the webhook after it): a new
        annotation, the newest of the project, on the task with the fewest annotations, choosing the
        other class than the task's newest annotation (so that its manifest line changes), the task's
        ``updated_at`` and counts as they were. Returns the task's id."""
        with contextlib.closing(sqlite3.connect(self.data_dir / "label_studio.sqlite3")) as db:
            db.row_factory = sqlite3.Row
            source = db.execute(
                "SELECT * FROM task_completion WHERE project_id = ? ORDER BY id DESC LIMIT 1", (project_id,)
            ).fetchone()
            assert source is not None, "the project has no annotation to copy"
            target = int(
                db.execute(
                    "SELECT id FROM task WHERE project_id = ? ORDER BY total_annotations, id LIMIT 1",
                    (project_id,),
                ).fetchone()[0]
            )
            newest = db.execute(
                "SELECT result FROM task_completion WHERE task_id = ? AND NOT was_cancelled "
                "ORDER BY updated_at DESC LIMIT 1",
                (target,),
            ).fetchone()
            label = "outdoor" if newest is not None and '"indoor"' in newest[0] else "indoor"
            now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")  # as Django keeps it in SQLite
            row = {
                **dict(source),
                "task_id": target,
                "result": json.dumps([choices(label, rid="cut-short")]),
                "result_count": 1,
                "was_cancelled": False,
                "ground_truth": False,
                "unique_id": uuid.uuid4().hex,
                "created_at": now,
                "updated_at": now,
                "parent_annotation_id": None,
                "parent_prediction_id": None,
            }
            del row["id"]
            db.execute(
                f"INSERT INTO task_completion ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
            db.commit()
        return target

    def start(self) -> float:
        """Start it again; return the seconds it took to serve."""
        started = time.monotonic()
        self.server.process = start_label_studio(
            self.data_dir,
            self.port,
            username=self.server.username,
            password=self.server.password,
            token=self.server.token,
            log_path=self.log_path,
            env_dir=label_studio_env(),
        )
        return time.monotonic() - started


@contextmanager
def private_label_studio(session: LabelStudioServer, workdir: Path) -> Iterator[PrivateLabelStudio]:
    """Copy the session server's database (SQLite's online backup: consistent while it runs) and its
    ``.env`` (the secret key), and start a server of our own on it; stop it after."""
    source = session.process.data_dir
    data_dir = workdir / "ls-data"
    data_dir.mkdir(parents=True)
    shutil.copy2(source / ".env", data_dir / ".env")
    with (
        contextlib.closing(sqlite3.connect(source / "label_studio.sqlite3")) as src,
        contextlib.closing(sqlite3.connect(data_dir / "label_studio.sqlite3")) as dst,
    ):
        src.backup(dst)
    private = PrivateLabelStudio(
        LabelStudioServer(session.url, session.token, session.username, session.password, session.process),
        free_port(),
        data_dir,
        workdir / "label-studio.log",
    )
    private.start()
    private.server.url = private.server.process.url
    try:
        yield private
    finally:
        private.stop()


# ---------------------------------------------------------------------------------------------- results


def record(scenario: str, **facts: Any) -> None:
    """Print a scenario's facts and merge them into ``bench/results/faults.json``."""
    print(f"\n[faults] {scenario}: {json.dumps(facts, sort_keys=True)}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        results = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        results = {}
    results[scenario] = {**facts, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    tmp.replace(RESULTS)
