"""How one project's publish time grows with its dataset (issue 6): a table and a plot.

Run from the repository root::

    .venv/bin/python bench/bench_publish.py [--sizes 10000,50000,250000] [--changes 1] [--repeat 5]

For each N it builds a project of N tasks (a Choices label on each, boxes on a third of them, half train,
half test), then measures the worker's :class:`~sync_service.domain.publisher.Publisher` against a real Redis (a
claimed, empty database; or a ``redis-server`` of its own) and moto's S3 server (a real HTTP endpoint):

* **rebuild**: a full publish from every task into empty caches (the first publish, or after Redis was
  lost), and **rebuild again**: the same over the caches the earlier publishes kept (what a full reconcile
  or a changed label config costs),
* **update**: a publish after ``--changes`` annotations changed (what one webhook costs), ``--repeat``
  times; the median is reported.

Label Studio is not started here: its export is served to the publisher by an in-process stand-in holding
the same tasks (export shape), so the figures are the service's own cost. Label Studio's export time per
task is measured against the real server in ``bench/bench_sync.py``. Each update is split into its
phases (reading the changed tasks, updating the cache, loading it, writing the manifests, validating,
uploading) from the publisher's own timings.

Prints a table, writes ``bench/results/publish.json``, ``bench/publish_growth.md`` (the table) and
``bench/publish_growth.png`` (the plot, matplotlib); ``--no-plot`` writes only the JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))  # the tests' helpers (tests/realparts.py)

import orjson  # noqa: E402
from bench_core import real_shaped  # noqa: E402
from botocore.client import BaseClient  # noqa: E402
from machine import describe, speed  # noqa: E402
from redis import Redis  # noqa: E402
from s3store import moto_process  # noqa: E402

from converters.labelconfig import build_label_config  # noqa: E402
from sync_service.domain import publisher as publisher_module  # noqa: E402
from sync_service.domain.projects import ProjectInfo, Projects  # noqa: E402
from sync_service.domain.publisher import Publisher  # noqa: E402
from sync_service.edges.s3 import Storage  # noqa: E402
from sync_service.edges.state import IMAGE_META_KEY, ProjectState  # noqa: E402
from tests.realparts import empty_and_delete_bucket, redis_db, s3_client  # noqa: E402

RESULTS = HERE / "results" / "publish.json"
PLOT = HERE / "publish_growth.png"
TABLE = HERE / "publish_growth.md"
LABELS = ["cat", "dog", "bird", "fish", "horse", "cow", "sheep", "frog"]
BOXES = ["face", "sign", "car"]
MIB = 1024 * 1024
PROJECT_ID = 910_001


def make_task(
    task_id: int, rnd: random.Random, *, label: str | None = None, shape: str = "real"
) -> dict[str, Any]:
    """One task as Label Studio's JSON export gives it: a Choices label, boxes on every third task;
    ``real``: with every key of a real export (``bench_core.real_shaped``), ``thin``: only the keys the
    publisher reads."""
    thin = _thin_task(task_id, rnd, label)
    return real_shaped(thin, rnd) if shape == "real" else thin


def _thin_task(task_id: int, rnd: random.Random, label: str | None) -> dict[str, Any]:
    result: list[dict[str, Any]] = [
        {
            "id": f"c{task_id}",
            "from_name": "label",
            "to_name": "image",
            "type": "choices",
            "value": {"choices": [label or rnd.choice(LABELS)]},
        }
    ]
    if task_id % 3 == 0:
        for b in range(rnd.randint(1, 3)):
            result.append(
                {
                    "id": f"b{task_id}-{b}",
                    "from_name": "bbox",
                    "to_name": "image",
                    "type": "rectanglelabels",
                    "original_width": 1024,
                    "original_height": 768,
                    "image_rotation": 0,
                    "value": {
                        "x": rnd.uniform(0, 50),
                        "y": rnd.uniform(0, 50),
                        "width": rnd.uniform(5, 40),
                        "height": rnd.uniform(5, 40),
                        "rotation": 0,
                        "rectanglelabels": [rnd.choice(BOXES)],
                    },
                }
            )
    return {
        "id": task_id,
        "data": {
            "image": f"s3://bench-images/img/{task_id % 97}/{task_id}.jpg",
            "dataset": "train" if task_id % 2 else "test",
        },
        "annotations": [
            {
                "id": task_id * 10,
                "result": result,
                "was_cancelled": False,
                "ground_truth": False,
                "created_at": "2026-01-01T00:00:00.000000Z",
                "updated_at": "2026-01-01T00:00:00.000000Z",
            }
        ],
        "predictions": [],
    }


class ExportStandIn:
    """Serves the publisher the calls it makes of Label Studio, from tasks held in memory.

    Each task is kept serialized, as Label Studio's export sends it, and each window of the export is
    parsed with orjson as the Label Studio edge parses a response: the publisher pays the parse, not the
    serialization (that is Label Studio's work, measured by ``bench_sync.py``)."""

    WINDOW = 1000  # tasks per export request, as the edge's EXPORT_BATCH

    def __init__(self, tasks: Iterable[tuple[int, dict[str, Any]]], label_config: str) -> None:
        self.raw = {task_id: orjson.dumps(task) for task_id, task in tasks}
        self.label_config = label_config
        self.url = "http://127.0.0.1:9"  # no task is an upload to it

    def set(self, task_id: int, task: dict[str, Any]) -> None:
        """A task changed in Label Studio."""
        self.raw[task_id] = orjson.dumps(task)

    def project(self, project_id: int, *, fields: Sequence[str] = ()) -> dict[str, Any]:
        return {"id": project_id, "label_config": self.label_config}

    def export_tasks(
        self, project_id: int, task_ids: Iterable[int] | None = None
    ) -> Iterator[dict[str, Any]]:
        ids = sorted(self.raw) if task_ids is None else sorted(t for t in set(task_ids) if t in self.raw)
        for start in range(0, len(ids), self.WINDOW):
            body = b"[" + b",".join(self.raw[t] for t in ids[start : start + self.WINDOW]) + b"]"
            yield from orjson.loads(body)

    def predictions(self, **_: Any) -> Iterator[dict[str, Any]]:
        return iter(())


class UploadMeter:
    """Counts the bytes the publisher sends to S3 (whole objects, and the uploaded parts of a write by
    changes: copied parts cost no upload)."""

    def __init__(self) -> None:
        self.bytes = 0
        self._originals: list[tuple[str, Any]] = []

    def install(self) -> None:
        meter = self
        put_file, put_bytes, write_pieces = Storage.put_file, Storage.put_bytes, Storage.write_pieces

        def counted_put_file(storage: Storage, key: str, stream: Any, **kwargs: Any) -> None:
            stream.seek(0, os.SEEK_END)
            meter.bytes += stream.tell()
            put_file(storage, key, stream, **kwargs)

        def counted_put_bytes(storage: Storage, key: str, data: bytes, **kwargs: Any) -> None:
            meter.bytes += len(data)
            put_bytes(storage, key, data, **kwargs)

        def counted_write_pieces(storage: Storage, key: str, pieces: Any, **kwargs: Any) -> Any:
            result = write_pieces(storage, key, pieces, **kwargs)
            meter.bytes += result.uploaded
            return result

        self._originals = [("put_file", put_file), ("put_bytes", put_bytes), ("write_pieces", write_pieces)]
        Storage.put_file = counted_put_file  # type: ignore[method-assign,assignment]
        Storage.put_bytes = counted_put_bytes  # type: ignore[method-assign,assignment]
        Storage.write_pieces = counted_write_pieces  # type: ignore[method-assign,assignment]

    def uninstall(self) -> None:
        for name, original in self._originals:
            setattr(Storage, name, original)


class PhaseClock:
    """Wraps the publisher's steps to time them (seconds per phase of the last publish)."""

    PHASES = (
        ("export", ExportStandIn, "export_tasks"),
        ("cache load", ProjectState, "entries"),
        ("cache update", ProjectState, "update"),
        ("cache rebuild", ProjectState, "replace_all"),
        ("validate", publisher_module, "entries_summary"),
        ("split", publisher_module, "assign"),
        ("upload", Storage, "put_file"),
        ("changes", publisher_module, "publish_changes"),
        ("changes: S3 writes", Storage, "write_pieces"),
        ("keep", publisher_module, "keep_full"),
        # Every request to the S3 store (moto's server here), boto3's own work on it included (signing,
        # checksums): the rest of a publish is the service's own, the bytes it assembles for the store too.
        ("store", BaseClient, "_make_api_call"),
    )

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._originals: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        for phase, owner, name in self.PHASES:
            original = getattr(owner, name)
            self._originals.append((owner, name, original))
            setattr(owner, name, self._timed(phase, original))

    def uninstall(self) -> None:
        for owner, name, original in self._originals:
            setattr(owner, name, original)

    def _timed(self, phase: str, func: Any) -> Any:
        clock = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = func(*args, **kwargs)
            clock.seconds[phase] = clock.seconds.get(phase, 0.0) + time.perf_counter() - started
            if isinstance(result, Iterator):
                return clock._streamed(phase, result)
            return result

        return timed

    def _streamed(self, phase: str, items: Iterator[Any]) -> Iterator[Any]:
        """``items`` as the publisher streams them (an export is never held whole), the time each one
        takes to come added to ``phase``."""
        while True:
            started = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started
                return
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - started
            yield item


def bench_size(
    n: int,
    redis: Redis,
    storage: Storage,
    projects: Projects,
    clock: PhaseClock,
    meter: UploadMeter,
    changes: int,
    repeat: int,
    shape: str,
) -> dict[str, Any]:
    rnd = random.Random(n)
    config = build_label_config(choices=LABELS, boxes=BOXES)
    # Label Studio's tasks live in its own process, not the worker's: the stand-in holds them as the
    # bytes it serves, never as this process's objects (which would fill the heap the publisher works in).
    images: list[str] = []

    def generated() -> Iterator[tuple[int, dict[str, Any]]]:
        for i in range(1, n + 1):
            task = make_task(i, rnd, shape=shape)
            images.append(task["data"]["image"])
            yield i, task

    ls = ExportStandIn(generated(), config)
    gc.collect()
    gc.freeze()
    info = ProjectInfo(PROJECT_ID, f"bench {n}", f"bench-{n}-{uuid.uuid4().hex[:6]}")
    projects.save(info)
    state = ProjectState(redis, PROJECT_ID)
    state.forget()
    # The images' facts as an earlier publish left them (a warm cache: no S3 header reads here).
    facts = orjson.dumps([1024, 768, 1, "jpeg"])
    pipe = redis.pipeline(transaction=False)
    for image in images:
        pipe.hset(IMAGE_META_KEY, image, facts)
    pipe.execute()
    pub = Publisher(redis, storage, ls, projects)  # type: ignore[arg-type]
    clock.seconds = {}
    started = time.perf_counter()
    result = pub.publish(PROJECT_ID, force=True)
    rebuild = time.perf_counter() - started
    assert result is not None and result.entries == {"train": n - n // 2, "test": n // 2}, result
    rebuild_phases = dict(clock.seconds)
    updates: list[float] = []
    uploaded: list[int] = []
    phases: list[dict[str, float]] = []
    for round_ in range(repeat):
        changed = rnd.sample(range(1, n + 1), changes)
        for task_id in changed:
            current = orjson.loads(ls.raw[task_id])["annotations"][0]["result"][0]["value"]["choices"][0]
            other = LABELS[(LABELS.index(current) + 1 + round_) % len(LABELS)]
            if other == current:
                other = LABELS[(LABELS.index(current) + 1) % len(LABELS)]
            ls.set(task_id, make_task(task_id, rnd, label=other, shape=shape))  # the line differs
        state.note(dirty=changed)
        clock.seconds = {}
        meter.bytes = 0
        started = time.perf_counter()
        result = pub.publish(PROJECT_ID)
        updates.append(time.perf_counter() - started)
        uploaded.append(meter.bytes)
        phases.append(dict(clock.seconds))
        assert result is not None and result.published and not result.rebuilt, result
    # A full reconcile or a changed label config: every task read again over the caches kept so far
    # (each task's record replaced by one that keeps what the old one knew).
    state.note(full=True)
    started = time.perf_counter()
    result = pub.publish(PROJECT_ID)
    rebuild_again = time.perf_counter() - started
    assert result is not None and result.rebuilt, result
    state.forget()
    for key in storage.list_keys(projects.key(info, "")):
        storage.delete_keys([key])
    median = statistics.median(updates)
    at = updates.index(median) if median in updates else 0
    return {
        "n": n,
        "shape": shape,
        "rebuild_s": rebuild,
        "rebuild_phases": rebuild_phases,
        "rebuild_again_s": rebuild_again,
        "update_median_s": median,
        "update_max_s": max(updates),
        "update_phases": phases[at],
        "updates_s": updates,
        "update_uploaded_bytes_max": max(uploaded),
    }


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 (only for the plot)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    ns = [r["n"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(ns, [r["rebuild_s"] for r in rows], "o-", label="rebuild (every task)")
    ax.plot(ns, [r["rebuild_again_s"] for r in rows], "^-", label="rebuild again, over the kept caches")
    ax.plot(ns, [r["update_median_s"] for r in rows], "s-", label="update (one webhook's change), median")
    ax.axhline(2.0, color="grey", linestyle=":", label="2 s (webhook -> manifest target, p95)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("entries in the project")
    ax.set_ylabel("publish seconds")
    ax.set_title("customlabels publish time vs dataset size (2 cores, Redis + moto S3)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def table(rows: list[dict[str, Any]]) -> str:
    """The figures as a Markdown table, with the growth ratios under it."""
    phases = list(
        dict.fromkeys(p for p, _, _ in PhaseClock.PHASES if any(p in r["update_phases"] for r in rows))
    )
    out = [
        "| entries | rebuild s | rebuild ms/entry | rebuild again ms/entry | update s (median) | update s "
        "(max) | update s without the store | update MiB sent | "
        + " | ".join(f"update: {p} s" for p in phases)
        + " |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(phases),
    ]
    for r in rows:
        cells = " | ".join(f"{r['update_phases'].get(p, 0.0):.3f}" for p in phases)
        out.append(
            f"| {r['n']:,} | {r['rebuild_s']:.2f} | {r['rebuild_s'] * 1000 / r['n']:.3f} | "
            f"{r['rebuild_again_s'] * 1000 / r['n']:.3f} | "
            f"{r['update_median_s']:.3f} | {r['update_max_s']:.3f} | {ours(r):.3f} | "
            f"{r['update_uploaded_bytes_max'] / MIB:.2f} | {cells} |"
        )
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        out.append("")
        out.append(
            f"{last['n']:,} / {first['n']:,} entries = {last['n'] / first['n']:.0f}x: rebuild "
            f"{last['rebuild_s'] / first['rebuild_s']:.1f}x, update "
            f"{last['update_median_s'] / first['update_median_s']:.1f}x (linear would be "
            f"{last['n'] / first['n']:.0f}x)."
        )
    out.append("")
    out.extend(verdicts(rows))
    out.append("")
    out.append(
        "rebuild: a publish from every task into empty caches (the first, or after Redis was lost); rebuild "
        "again: the same over the caches the earlier publishes kept (a full reconcile, a changed label "
        "config); update: a publish after one "
        "annotation changed (one webhook's work), the median of the runs, written from the state the last "
        "publish kept; MiB sent: the most bytes one update uploaded (copied parts cost none). Update phases: "
        "seconds of the median update in each step (changes: S3 writes is the part of changes spent in the "
        "multipart writes, mostly moto's server: it reads the whole source object for every part copy and "
        "ranged read, and rewrites the whole object on completion; store: every request to the S3 store, boto3's signing and checksums included; "
        "without the store: the median update less its store seconds; export: the stand-in handing over the tasks, streamed, within the step that reads them). moto's server holds objects in "
        "memory here (MOTO_S3_DEFAULT_KEY_BUFFER_SIZE), not in temporary files. Label "
        "Studio's export is served from memory here (its own cost: bench_sync.py); its tasks are "
        + (
            "shaped as a real export's (every key of Label Studio 1.23.2's task and annotation)."
            if rows and rows[0].get("shape") == "real"
            else "thin (only the keys the publisher reads)."
        )
    )
    return "\n".join(out)


def ours(row: dict[str, Any]) -> float:
    """The median update's seconds outside the S3 store's calls: the service's own share."""
    return float(row["update_median_s"] - row["update_phases"].get("store", 0.0))


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """Issue 14's targets, each with its figure and PASS or FAIL."""
    out = []
    largest = rows[-1]
    smallest = rows[0]

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    median = largest["update_median_s"]
    out.append(
        f"- update median at {largest['n']:,} entries: {median:.3f} s (target <= 0.25 s): {verdict(median <= 0.25)}"
    )
    if len(rows) > 1:
        ratio = median / smallest["update_median_s"]
        out.append(
            f"- update median {largest['n']:,} / {smallest['n']:,}: {ratio:.2f}x (target <= 2x): "
            f"{verdict(ratio <= 2)}"
        )
        own = ours(largest) / ours(smallest)
        out.append(
            f"- the same without the store's seconds (the service's own share): {ours(largest):.3f} s at "
            f"{largest['n']:,}, {own:.2f}x the {smallest['n']:,} figure (not a target: shows what grows with N)"
        )
    sent = largest["update_uploaded_bytes_max"] / MIB
    out.append(
        f"- uploaded per {largest['n']:,}-entry update: {sent:.2f} MiB at most (target <= 12 MiB): "
        f"{verdict(sent <= 12)}"
    )
    for what, key in (("rebuild", "rebuild_s"), ("rebuild again", "rebuild_again_s")):
        per_entry = largest[key] * 1000 / largest["n"]
        out.append(
            f"- {what} at {largest['n']:,} entries: {per_entry:.3f} ms/entry (target <= 0.05): "
            f"{verdict(per_entry <= 0.05)}"
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,50000,250000")
    parser.add_argument("--changes", type=int, default=1, help="tasks changed before each update publish")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--shape",
        choices=("real", "thin"),
        default="real",
        help="tasks with every key of a real export (default), or only the keys the publisher reads",
    )
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    figures = speed()  # before anything else runs
    clock = PhaseClock()
    clock.install()
    meter = UploadMeter()
    meter.install()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp, redis_db(Path(tmp)) as db:
        redis = Redis.from_url(db.url)
        with moto_process() as moto:
            client = s3_client(moto.url)
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            client.create_bucket(Bucket=bucket)
            storage = Storage(client, bucket)
            projects = Projects(redis, storage, "bench")
            try:
                for n in sizes:
                    print(f"bench: {n:,} entries ...", file=sys.stderr, flush=True)
                    rows.append(
                        bench_size(
                            n, redis, storage, projects, clock, meter, args.changes, args.repeat, args.shape
                        )
                    )
            finally:
                empty_and_delete_bucket(client, bucket)
                redis.close()
    meter.uninstall()  # installed over the clock's wrappers: taken off first
    clock.uninstall()
    text = table(rows)
    print(text)
    RESULTS.parent.mkdir(exist_ok=True)
    load = os.getloadavg()
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "load": load, "speed": figures}
    print(describe(figures))
    RESULTS.write_text(
        json.dumps({"machine": machine, "rows": rows, "changes": args.changes, "shape": args.shape}, indent=1)
        + "\n"
    )
    print(f"results: {RESULTS}")
    if not args.no_plot:
        TABLE.write_text(
            f"# Publish time vs dataset size\n\n`.venv/bin/python bench/bench_publish.py` on {machine['cpus']} "
            f"cores (load average at the end {load[0]:.2f}; {describe(figures)}).\n\n{text}\n\n"
            "![plot](publish_growth.png)\n"
        )
        plot(rows, PLOT)
        print(f"table: {TABLE}\nplot: {PLOT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
