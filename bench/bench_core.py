"""Benchmark of the ``customlabels`` converter command line against label-studio-sdk's own converter.

Run from the repository root::

    .venv/bin/python bench/bench_core.py [--n 100000] [--sizes 10000,100000,250000] [--shapes real,thin]
        [--quick]

For each shape of task and each N it writes N synthetic Label Studio export tasks (streamed to a file,
seeded, so every run sees the same input) and the matching label config. ``real`` tasks carry every key
of a Label Studio 1.23.2 export (19 a task, 21 an annotation, with their value types) laid out as that
server writes an export, a JSON array on one line; ``thin`` tasks only the keys the converter reads, one
a line. It then runs, each as its own child process:

* ``customlabels convert ls-to-manifest`` (seconds, tasks/s, peak RSS),
* a parse-only reference: the file read and parsed whole with orjson, the garbage collector frozen,
* label-studio-sdk's ``Converter.convert_to_coco`` on the same file with downloads off (seconds, peak RSS),
* ``customlabels convert manifest-to-ls`` on the manifest ls-to-manifest wrote (lines/s),

and once ``customlabels validate`` on a manifest of ``--validate-lines`` (250,000) lines written directly.
It prints one table with the targets beside the figures, marks each target PASS or FAIL, and writes the
same figures as JSON to ``bench/results/core.json``.

Peak RSS is the child's ``ru_maxrss`` as GNU time (``/usr/bin/time``, which starts it and waits for it
with wait4) reports it: the largest resident set of the command or of any process it waited for (pool
workers), i.e. of the biggest single process, not a sum. When psutil is installed, the peak proportional
set size (PSS) summed over the command's whole process tree is sampled too and shown in brackets, so a
worker pool's total footprint is visible.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "core.json"

CLASSES = [
    "cat", "dog", "horse", "cow", "sheep", "bird", "fish", "frog", "snake", "lizard",
    "car", "truck", "bus", "bicycle", "motorbike", "train", "boat", "plane", "tractor", "scooter",
]  # fmt: skip
BOX_LABELS = [
    "person", "face", "hand", "wheel", "door", "window", "plate", "sign", "light", "cone",
    "bag", "bottle", "cup", "chair", "table", "screen", "phone", "book", "clock", "box",
]  # fmt: skip
FOLDERS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
IMAGE_SIZES = [(640, 480), (800, 600), (1024, 768), (1280, 720), (1920, 1080), (480, 640)]
STAMP = "2024-01-01T00:00:00Z"
BASE_TIME = 1_717_200_000  # 2024-06-01, the real tasks' creation

# Targets (issue 2, measured on 2 cores), on the thin tasks.
TARGET_RATIO = 4.0
# Targets (issue 14), on real exports: the SDK's time over ours, ours over parsing the file alone.
TARGET_REAL_RATIO = 8.0
TARGET_PARSE_RATIO = 1.5
TARGET_RSS_MIB = 150.0
TARGET_RSS_FLAT = 1.25  # largest / smallest ls-to-manifest peak RSS over the sizes
TARGET_LINES_PER_S = 60_000.0
TARGET_VALIDATE_S = 5.0
TARGET_VALIDATE_LINES = 250_000

MIB = 1024 * 1024


# --------------------------------------------------------------------------------------------------------
# Synthetic input


def label_config() -> str:
    """The label config matching :func:`write_tasks`: one Choices and one RectangleLabels over the image."""
    choices = "".join(f'<Choice value="{c}"/>' for c in CLASSES)
    labels = "".join(f'<Label value="{b}"/>' for b in BOX_LABELS)
    return (
        '<View><Image name="image" value="$image"/>'
        f'<Choices name="label" toName="image" choice="single">{choices}</Choices>'
        f'<RectangleLabels name="bbox" toName="image">{labels}</RectangleLabels></View>'
    )


def _dumps() -> Callable[[Any], bytes]:
    """A compact JSON encoder to bytes: orjson (a project dependency) when importable, else json."""
    try:
        import orjson  # noqa: PLC0415 - kept out of the module imports so the SDK child stays lean
    except ImportError:
        return lambda obj: json.dumps(obj, separators=(",", ":")).encode()
    return orjson.dumps


def _box_percents(rnd: random.Random) -> tuple[float, float, float, float]:
    """x, y, width, height in percent of the image, the box wholly inside it and at least 2% a side."""
    width, height = rnd.uniform(2.0, 40.0), rnd.uniform(2.0, 40.0)
    x, y = rnd.uniform(0.0, 100.0 - width), rnd.uniform(0.0, 100.0 - height)
    return round(x, 4), round(y, 4), round(width, 4), round(height, 4)


def _thin_task(rnd: random.Random, i: int) -> dict[str, Any]:
    """A task with only the keys the converter reads: one Choices result and 1-3 rectangles."""
    return {
        "id": i,
        "data": {"image": f"s3://bench-bucket/images/{rnd.choice(FOLDERS)}/img_{i}.jpg"},
        "annotations": [
            {
                "id": i,
                "was_cancelled": False,
                "ground_truth": False,
                "created_at": STAMP,
                "updated_at": STAMP,
                "result": _results(rnd, i),
            }
        ],
        "predictions": [],
    }


def _results(rnd: random.Random, i: int) -> list[dict[str, Any]]:
    """One Choices result and 1-3 rectangles, as Label Studio's editor saves them."""
    width, height = rnd.choice(IMAGE_SIZES)
    results: list[dict[str, Any]] = [
        {
            "id": f"c{i}",
            "from_name": "label",
            "to_name": "image",
            "type": "choices",
            "value": {"choices": [rnd.choice(CLASSES)]},
        }
    ]
    for j in range(rnd.randint(1, 3)):
        x, y, w, h = _box_percents(rnd)
        results.append(
            {
                "id": f"r{i}_{j}",
                "from_name": "bbox",
                "to_name": "image",
                "type": "rectanglelabels",
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "value": {
                    "x": x,
                    "y": y,
                    "width": w,
                    "height": h,
                    "rotation": 0,
                    "rectanglelabels": [rnd.choice(BOX_LABELS)],
                },
            }
        )
    return results


def _stamp(base: int, seconds: float) -> str:
    """An ISO 8601 UTC timestamp with microseconds, as Label Studio's API writes them."""
    moment = datetime.fromtimestamp(base + seconds, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _uuid(rnd: random.Random) -> str:
    return str(uuid.UUID(int=rnd.getrandbits(128), version=4))


def _real_task(rnd: random.Random, i: int) -> dict[str, Any]:
    return real_shaped(_thin_task(rnd, i), rnd)


def real_shaped(thin: dict[str, Any], rnd: random.Random) -> dict[str, Any]:
    """``thin`` (a task with only the keys the converter reads: id, data, one annotation's result) with
    every key of a Label Studio 1.23.2 export, in its order and with its value types (read from a real
    export of the server the tests start; ``/work/shared/spec/labelstudio.md``): 19 keys a task, 21 an
    annotation. One task in four was labeled from a model's prediction: its annotation carries that
    prediction (``prediction``, with the model's own result) and the task lists the prediction's id; one
    in twenty has a draft left beside its annotation; one in ten a comment."""
    i = int(thin["id"])
    created = i * 3.0
    results = thin["annotations"][0]["result"]
    from_model = rnd.random() < 0.25
    prediction: dict[str, Any] = {}
    if from_model:
        predicted = copy.deepcopy(results)
        for result in predicted[1:]:
            result["value"]["x"] = round(min(result["value"]["x"] + rnd.uniform(0.0, 0.5), 50.0), 4)
        prediction = {
            "id": i,
            "result": predicted,
            "model_version": "detector-2024-06",
            "created_ago": "3\u00a0weeks",
            "score": round(rnd.uniform(0.5, 1.0), 6),
            "cluster": None,
            "neighbors": None,
            "mislabeling": 0.0,
            "created_at": _stamp(BASE_TIME, created + 0.5),
            "updated_at": _stamp(BASE_TIME, created + 0.5),
            "model": None,
            "model_run": None,
            "task": i,
            "project": 1,
        }
    lead_time = round(rnd.uniform(2.0, 120.0), 3)
    annotation = {
        "id": i,
        "completed_by": rnd.randint(1, 6),
        "result": results,
        "was_cancelled": False,
        "ground_truth": rnd.random() < 0.02,
        "created_at": _stamp(BASE_TIME, created + 60.0),
        "updated_at": _stamp(BASE_TIME, created + 60.0 + lead_time),
        "draft_created_at": _stamp(BASE_TIME, created + 50.0) if rnd.random() < 0.3 else None,
        "lead_time": lead_time,
        "prediction": prediction,
        "result_count": len(results),
        "unique_id": _uuid(rnd),
        "import_id": None,
        "last_action": None,
        "bulk_created": False,
        "task": i,
        "project": 1,
        "updated_by": rnd.choice([None, 1, 2]),
        "parent_prediction": i if from_model else None,
        "parent_annotation": None,
        "last_created_by": None,
    }
    drafts: list[dict[str, Any]] = []
    if rnd.random() < 0.05:
        drafts.append(
            {
                "id": i,
                "user": "annotator@example.com",
                "created_username": "annotator@example.com, 2",
                "created_ago": "2\u00a0days",
                "result": copy.deepcopy(results[:1]),
                "lead_time": round(rnd.uniform(1.0, 30.0), 3),
                "was_postponed": False,
                "import_id": None,
                "created_at": _stamp(BASE_TIME, created + 30.0),
                "updated_at": _stamp(BASE_TIME, created + 31.0),
                "task": i,
                "annotation": None,
            }
        )
    commented = rnd.random() < 0.1
    return {
        "id": i,
        "annotations": [annotation],
        "drafts": drafts,
        "predictions": [i] if from_model else [],  # ids: the export does not expand them
        "data": thin["data"],
        "meta": {},
        "created_at": _stamp(BASE_TIME, created),
        "updated_at": annotation["updated_at"],
        "allow_skip": True,
        "inner_id": i,
        "total_annotations": 1,
        "cancelled_annotations": 0,
        "total_predictions": 1 if from_model else 0,
        "comment_count": 1 if commented else 0,
        "unresolved_comment_count": 0,
        "last_comment_updated_at": _stamp(BASE_TIME, created + 200.0) if commented else None,
        "project": 1,
        "updated_by": annotation["completed_by"],
        "comment_authors": [rnd.randint(1, 6)] if commented else [],
    }


SHAPES = ("real", "thin")


def iter_tasks(n: int, seed: int = 7, *, shape: str = "real") -> Iterator[dict[str, Any]]:
    """Yield N Label Studio export tasks, one at a time, each with one Choices result and 1-3
    rectangles: ``real`` ones with every key of a real export, or ``thin`` ones with only the keys the
    converter reads."""
    make = _real_task if shape == "real" else _thin_task
    rnd = random.Random(seed)
    for i in range(1, n + 1):
        yield make(rnd, i)


def write_tasks(path: Path, n: int, seed: int = 7, *, shape: str = "real") -> None:
    """Write N tasks to ``path`` as a Label Studio JSON export, one task at a time: ``real`` tasks as
    Label Studio 1.23.2 writes an export (a JSON array on one line, no spaces, no final line break),
    ``thin`` ones as our own exports lay them out (the array one task a line)."""
    dumps = _dumps()
    real = shape == "real"
    with path.open("wb") as out:
        out.write(b"[")
        for index, task in enumerate(iter_tasks(n, seed, shape=shape)):
            if real:
                out.write((b"," if index else b"") + dumps(task))
            else:
                out.write((b",\n" if index else b"\n") + dumps(task))
        out.write(b"]" if real else b"\n]\n")


def write_manifest(path: Path, n: int, seed: int = 11) -> None:
    """Write N valid Ground Truth lines (image classification + bounding boxes), one at a time."""
    dumps = _dumps()
    rnd = random.Random(seed)
    class_meta = {
        "confidence": 1,
        "job-name": "labeling-job/bench",
        "human-annotated": "yes",
        "creation-date": "2024-01-01T00:00:00",
        "type": "groundtruth/image-classification",
    }
    with path.open("wb") as out:
        for i in range(1, n + 1):
            width, height = rnd.choice(IMAGE_SIZES)
            class_id = rnd.randrange(len(CLASSES))
            boxes, class_map = [], {}
            for _ in range(rnd.randint(1, 3)):
                x, y, w, h = _box_percents(rnd)
                box_id = rnd.randrange(len(BOX_LABELS))
                class_map[str(box_id)] = BOX_LABELS[box_id]
                boxes.append(
                    {
                        "class_id": box_id,
                        "top": int(y * height / 100),
                        "left": int(x * width / 100),
                        "width": int(w * width / 100),
                        "height": int(h * height / 100),
                    }
                )
            line = {
                "source-ref": f"s3://bench-bucket/images/{rnd.choice(FOLDERS)}/img_{i}.jpg",
                "label": class_id,
                "label-metadata": {**class_meta, "class-name": CLASSES[class_id]},
                "bounding-box": {
                    "image_size": [{"width": width, "height": height, "depth": 3}],
                    "annotations": boxes,
                },
                "bounding-box-metadata": {
                    "objects": [{"confidence": 1} for _ in boxes],
                    "class-map": class_map,
                    "type": "groundtruth/object-detection",
                    "human-annotated": "yes",
                    "creation-date": "2024-01-01T00:00:00",
                    "job-name": "labeling-job/bench",
                },
            }
            out.write(dumps(line) + b"\n")


def count_lines(path: Path) -> int:
    """Number of non-blank lines of a file, read in blocks."""
    with path.open("rb") as stream:
        return sum(1 for line in stream if line.strip())


# --------------------------------------------------------------------------------------------------------
# Measuring one child process


@dataclass
class Run:
    """What one measured child process took."""

    seconds: float
    cpu_seconds: float
    max_rss_mib: float
    tree_pss_mib: float | None
    exit_code: int


def _pss_kib(pid: int) -> int:
    """Proportional set size of one process in KiB (0 when it is gone or unreadable)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return 0
    return 0


class TreeSampler(threading.Thread):
    """Samples the PSS summed over a process and its descendants until stopped; keeps the peak (KiB)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        """Sample until :attr:`stop_event` is set."""
        import psutil  # noqa: PLC0415 - optional (a dev dependency)

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stop_event.is_set():
            try:
                pids = [self.pid, *(child.pid for child in root.children(recursive=True))]
            except psutil.Error:
                pids = [self.pid]
            self.peak_kib = max(self.peak_kib, sum(_pss_kib(pid) for pid in pids))
            self.stop_event.wait(self.interval)


def _has_psutil() -> bool:
    try:
        import psutil  # noqa: F401, PLC0415
    except ImportError:
        return False
    return os.path.exists(f"/proc/{os.getpid()}/smaps_rollup")


def gnu_time() -> str | None:
    """Path of GNU time (``/usr/bin/time``), or None when it is missing or another ``time``."""
    path = shutil.which("time") or "/usr/bin/time"
    if not os.path.exists(path):
        return None
    probe = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return path if "GNU" in probe.stdout + probe.stderr else None


TIME = gnu_time()


def measure(
    argv: Sequence[str], log: Path, *, env: dict[str, str] | None = None, ok: Sequence[int] = (0,)
) -> Run:
    """Run ``argv`` as a child process alone and return its wall time, CPU time and peak memory.

    The child is started through GNU time, a process of about 2 MiB, which forks it and reads its
    rusage with wait4. Started straight from here, the child's ``ru_maxrss`` would start from this
    process's own resident set (fork and vfork carry the parent's RSS high-water mark into the child,
    and exec keeps it), so a benchmark that had grown would inflate every later figure. Without GNU
    time the child is reaped here with ``os.wait4`` and that floor is recorded in the notes.

    stdout is discarded and stderr goes to ``log`` (a file, so a chatty child cannot block on a full
    pipe). An exit code outside ``ok`` stops the benchmark with the end of the log.
    """
    stats = log.with_suffix(".rusage")
    command = [TIME, "-f", "%x %M %U %S", "-o", str(stats), *argv] if TIME else list(argv)
    with log.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT, env=env
        )
        sampler = TreeSampler(proc.pid) if _has_psutil() else None
        if sampler is not None:
            sampler.start()
        # Wait for the exit without reaping, so the sampler never reads a reused pid; then reap.
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        seconds = time.perf_counter() - start
        if sampler is not None:
            sampler.stop_event.set()
            sampler.join()
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if TIME:
        # GNU time writes "Command exited with non-zero status N" first when N != 0; the figures are last.
        fields = stats.read_text().split()[-4:]
        code, max_rss_kib, cpu = int(fields[0]), int(fields[1]), float(fields[2]) + float(fields[3])
    else:
        code, max_rss_kib, cpu = proc.returncode, usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    if code not in ok:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"bench: {' '.join(argv)} exited {code}:\n{tail}")
    return Run(
        seconds=seconds,
        cpu_seconds=cpu,
        max_rss_mib=max_rss_kib / 1024,  # KiB on Linux
        tree_pss_mib=sampler.peak_kib / 1024 if sampler is not None else None,
        exit_code=code,
    )


# --------------------------------------------------------------------------------------------------------
# The reference: label-studio-sdk's converter, run in its own child process


def sdk_child(tasks: str, config: str, out_dir: str, status: str) -> int:
    """Body of the SDK child: export COCO from ``tasks`` with downloads off, refusing any network use.

    Writes ``{"network_attempts": [...], "convert_s": ...}`` to ``status``. Socket connects and name
    lookups raise, and are recorded, so a converter that tried the network would show it.
    """
    attempts: list[str] = []

    def refuse(kind: str) -> Callable[..., Any]:
        def guard(*args: Any, **kwargs: Any) -> Any:
            attempts.append(f"{kind}{args[1:] if kind == 'connect' else args[:2]}")
            raise OSError(f"bench: network use refused ({kind})")

        return guard

    socket.socket.connect = refuse("connect")  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse("connect")  # type: ignore[method-assign]
    socket.getaddrinfo = refuse("getaddrinfo")
    socket.create_connection = refuse("create_connection")

    import logging  # noqa: PLC0415

    # The SDK logs a warning for every Choices result it cannot put into COCO; silencing it only helps
    # the reference (no per-task writes to stderr), so the ratio is not flattered.
    logging.disable(logging.WARNING)
    from label_studio_sdk.converter import Converter  # type: ignore[attr-defined]  # noqa: PLC0415

    start = time.perf_counter()
    converter = Converter(  # type: ignore[no-untyped-call]
        config=Path(config).read_text(), project_dir=out_dir, download_resources=False
    )
    converter.convert_to_coco(  # type: ignore[no-untyped-call]
        tasks, out_dir, output_image_dir=os.path.join(out_dir, "images"), is_dir=False
    )
    convert_s = time.perf_counter() - start
    Path(status).write_text(json.dumps({"network_attempts": attempts, "convert_s": convert_s}))
    return 0


def sdk_env(home: Path) -> dict[str, str]:
    """The SDK child's environment: no Label Studio host or key (so nothing to download from), and its
    per-user data and cache directories inside the benchmark's temporary directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    env.update(XDG_DATA_HOME=str(home / "data"), XDG_CACHE_HOME=str(home / "cache"))
    return env


def coco_counts(result: Path) -> tuple[int, int]:
    """Images and annotations in the SDK's COCO ``result.json``, counted streaming (this process stays
    small)."""
    import ijson  # noqa: PLC0415 - a dependency of the project and of the SDK

    counts = {"images.item": 0, "annotations.item": 0}
    with result.open("rb") as f:
        for prefix, event, _ in ijson.parse(f):
            if event == "start_map" and prefix in counts:
                counts[prefix] += 1
    return counts["images.item"], counts["annotations.item"]


# --------------------------------------------------------------------------------------------------------
# The benchmark


def customlabels() -> list[str]:
    """The command under test: the venv's console script, else the module it points at."""
    script = Path(sys.executable).with_name("customlabels")
    if script.exists():
        return [str(script)]
    found = shutil.which("customlabels")
    return [found] if found else [sys.executable, "-m", "plugin.cli"]


def parse_child(tasks: str) -> int:
    """Body of the parse-only child: read ``tasks`` and parse it whole with orjson, the collector frozen
    (so its passes over the growing tree, which a converter streaming tasks does not have, are not
    counted): the floor a converter that reads every task cannot go below on one core."""
    import gc  # noqa: PLC0415

    import orjson  # noqa: PLC0415

    gc.freeze()
    gc.disable()
    with open(tasks, "rb") as stream:
        orjson.loads(stream.read())
    return 0


@dataclass
class SizeRow:
    """Figures for one N and one shape of task."""

    n: int
    shape: str
    ls_to_manifest: Run
    tasks_per_s: float
    manifest_lines: int
    manifest_to_ls: Run
    lines_per_s: float
    sdk: Run | None = None
    sdk_convert_s: float | None = None
    sdk_images: int | None = None
    sdk_annotations: int | None = None
    sdk_network_attempts: int | None = None
    sdk_note: str = ""
    ratio: float | None = None
    parse: Run | None = None  # parsing the same file alone (orjson, collector frozen)
    parse_ratio: float | None = None  # ls-to-manifest time / parse time


def bench_size(
    n: int, shape: str, work: Path, cli: list[str], config: Path, sdk_reason: str | None
) -> SizeRow:
    """Measure ls-to-manifest, parsing alone, manifest-to-ls and (unless ``sdk_reason`` says why not)
    the SDK on N tasks of ``shape``."""
    tasks, manifest, back = work / f"tasks_{n}.json", work / f"train_{n}.manifest", work / f"back_{n}.json"
    write_tasks(tasks, n, shape=shape)
    log = work / "stderr.log"
    ours = measure(
        [*cli, "convert", "ls-to-manifest", str(tasks), "-o", str(manifest), "--label-config", str(config)],
        log,
    )
    lines = count_lines(manifest)
    if lines != n:
        raise SystemExit(f"bench: ls-to-manifest wrote {lines} lines for {n} tasks; see {log}")
    parse = measure([sys.executable, str(Path(__file__).resolve()), "--parse-child", str(tasks)], log)
    reverse = measure([*cli, "convert", "manifest-to-ls", str(manifest), "-o", str(back)], log)
    row = SizeRow(
        n=n,
        shape=shape,
        parse=parse,
        parse_ratio=ours.seconds / parse.seconds,
        ls_to_manifest=ours,
        tasks_per_s=n / ours.seconds,
        manifest_lines=lines,
        manifest_to_ls=reverse,
        lines_per_s=lines / reverse.seconds,
    )
    manifest.unlink()
    back.unlink()
    if sdk_reason is None:
        out_dir, status = work / f"coco_{n}", work / "sdk_status.json"
        out_dir.mkdir()
        argv = [sys.executable, str(Path(__file__).resolve()), "--sdk-child"]
        row.sdk = measure([*argv, str(tasks), str(config), str(out_dir), str(status)], log, env=sdk_env(work))
        facts = json.loads(status.read_text())
        row.sdk_convert_s = facts["convert_s"]
        row.sdk_network_attempts = len(facts["network_attempts"])
        row.sdk_images, row.sdk_annotations = coco_counts(out_dir / "result.json")
        if row.sdk_images != n:
            raise SystemExit(f"bench: the SDK's COCO has {row.sdk_images} images for {n} tasks")
        if row.sdk_network_attempts:
            row.sdk_note = (
                f"tried the network {row.sdk_network_attempts} times: {facts['network_attempts'][:3]}"
            )
        row.ratio = row.sdk.seconds / ours.seconds
        shutil.rmtree(out_dir)
    else:
        row.sdk_note = sdk_reason
    tasks.unlink()
    return row


def sdk_skip_reason(n: int, shape: str, headline_n: int, done: list[SizeRow], budget_s: float) -> str | None:
    """Why the SDK is not run at N, or None to run it: above the headline N, it runs only when the time
    extrapolated linearly from the largest N measured so far (on tasks of the same shape) is within the
    budget."""
    if n <= headline_n:
        return None
    measured = [row for row in done if row.sdk is not None and row.shape == shape]
    if not measured:
        return None
    last = max(measured, key=lambda row: row.n)
    assert last.sdk is not None
    estimate = last.sdk.seconds * n / last.n
    if estimate > budget_s:
        return f"not run: about {estimate:.0f} s expected (> {budget_s:.0f} s budget)"
    return None


@dataclass
class Check:
    """One target and whether it is met."""

    target: str
    figure: str
    passed: bool


def _shape_checks(rows: list[SizeRow], shape: str, headline_n: int, ratio_target: float) -> list[Check]:
    """The targets on the tasks of one shape: the SDK ratio at the headline N, peak RSS, its flatness
    and, on real exports, the time over parsing alone at the headline N."""
    mine = [row for row in rows if row.shape == shape]
    if not mine:
        return []
    head = next(row for row in mine if row.n == headline_n)
    result = []
    where = f"{shape} tasks, N={headline_n:,}"
    if head.ratio is not None:
        result.append(
            Check(
                f"SDK COCO time / ls-to-manifest time >= {ratio_target:.0f}x ({where})",
                f"{head.ratio:.1f}x",
                head.ratio >= ratio_target,
            )
        )
    else:
        result.append(Check(f"SDK ratio ({where})", "SDK not measured", False))
    if shape == "real" and head.parse_ratio is not None:
        result.append(
            Check(
                f"ls-to-manifest time / parse-only time <= {TARGET_PARSE_RATIO}x ({where})",
                f"{head.parse_ratio:.2f}x",
                head.parse_ratio <= TARGET_PARSE_RATIO,
            )
        )
    rss = [row.ls_to_manifest.max_rss_mib for row in mine]
    result.append(
        Check(
            f"ls-to-manifest peak RSS <= {TARGET_RSS_MIB:.0f} MiB at every N ({shape} tasks)",
            " / ".join(f"{r:.0f}" for r in rss) + " MiB",
            max(rss) <= TARGET_RSS_MIB,
        )
    )
    flat = max(rss) / min(rss)
    result.append(
        Check(
            f"ls-to-manifest peak RSS flat in N, largest/smallest <= {TARGET_RSS_FLAT} ({shape} tasks)",
            f"{flat:.2f}",
            flat <= TARGET_RSS_FLAT,
        )
    )
    return result


def checks(rows: list[SizeRow], headline_n: int, validate: Run, validate_lines: int) -> list[Check]:
    """PASS/FAIL of each target: issue 14's on real exports, issue 2's on the thin tasks."""
    result = _shape_checks(rows, "real", headline_n, TARGET_REAL_RATIO)
    result += _shape_checks(rows, "thin", headline_n, TARGET_RATIO)
    head = next(row for row in rows if row.n == headline_n)
    result.append(
        Check(
            f"manifest-to-ls >= {TARGET_LINES_PER_S:,.0f} lines/s ({head.shape} tasks, N={headline_n:,})",
            f"{head.lines_per_s:,.0f} lines/s",
            head.lines_per_s >= TARGET_LINES_PER_S,
        )
    )
    result.append(
        Check(
            f"validate {validate_lines:,} lines <= {TARGET_VALIDATE_S:.0f} s",
            f"{validate.seconds:.2f} s (exit {validate.exit_code})",
            validate.seconds <= TARGET_VALIDATE_S,
        )
    )
    return result


def _mib(run: Run | None) -> str:
    if run is None:
        return "-"
    tree = f" [{run.tree_pss_mib:.0f}]" if run.tree_pss_mib is not None else ""
    return f"{run.max_rss_mib:.0f}{tree}"


def print_table(
    rows: list[SizeRow], validate: Run, validate_lines: int, found: list[Check], out: IO[str]
) -> None:
    """The results table, the targets with PASS/FAIL, and notes."""
    header = (
        f"{'shape':>5} {'N':>8} | {'ls->manifest s':>14} {'tasks/s':>9} {'RSS MiB':>10} | "
        f"{'parse s':>7} {'ours/parse':>10} | {'SDK COCO s':>10} {'SDK RSS MiB':>11} {'SDK/ours':>8} | "
        f"{'manifest->ls s':>14} {'lines/s':>9} {'RSS MiB':>10}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for row in rows:
        sdk_s = f"{row.sdk.seconds:.2f}" if row.sdk else "skipped"
        ratio = f"{row.ratio:.1f}x" if row.ratio is not None else "-"
        parse_s = f"{row.parse.seconds:.2f}" if row.parse else "-"
        over_parse = f"{row.parse_ratio:.2f}x" if row.parse_ratio is not None else "-"
        print(
            f"{row.shape:>5} {row.n:>8,} | {row.ls_to_manifest.seconds:>14.2f} {row.tasks_per_s:>9,.0f} "
            f"{_mib(row.ls_to_manifest):>10} | {parse_s:>7} {over_parse:>10} | "
            f"{sdk_s:>10} {_mib(row.sdk):>11} {ratio:>8} | "
            f"{row.manifest_to_ls.seconds:>14.2f} {row.lines_per_s:>9,.0f} {_mib(row.manifest_to_ls):>10}",
            file=out,
        )
    print(
        f"validate: {validate_lines:,} lines in {validate.seconds:.2f} s (exit {validate.exit_code}), "
        f"peak RSS {_mib(validate)} MiB",
        file=out,
    )
    print("\ntargets:", file=out)
    for check in found:
        print(f"  {'PASS' if check.passed else 'FAIL'}  {check.target}: {check.figure}", file=out)
    print("\nnotes:", file=out)
    print(
        "  RSS MiB = peak ru_maxrss of the largest single process of the command "
        f"({'GNU time' if TIME else 'os.wait4 from this process: may include its own RSS, install GNU time'}); "
        "[bracketed] = peak PSS summed over its process tree (workers included), sampled every 50 ms.",
        file=out,
    )
    print(
        "  SDK = label_studio_sdk.converter.Converter(..., download_resources=False).convert_to_coco(...), "
        "wall time of the whole child (interpreter start and imports included, as for ours).",
        file=out,
    )
    print(
        "  parse = a child reading the tasks file and parsing it whole with orjson.loads, the garbage "
        "collector frozen, interpreter start included; shapes: real = every key of a Label Studio 1.23.2 "
        "export, laid out as it writes one (a JSON array on one line); thin = only the keys the converter "
        "reads, one task a line.",
        file=out,
    )
    for row in rows:
        cpu = [f"ours {row.ls_to_manifest.cpu_seconds:.2f}"]
        if row.parse is not None:
            cpu.append(f"parse {row.parse.cpu_seconds:.2f}")
        if row.sdk is not None:
            cpu.append(f"SDK {row.sdk.cpu_seconds:.2f}")
        ratios = []
        if row.sdk is not None:
            ratios.append(f"SDK/ours {row.sdk.cpu_seconds / row.ls_to_manifest.cpu_seconds:.1f}x")
        if row.parse is not None:
            ratios.append(f"ours/parse {row.ls_to_manifest.cpu_seconds / row.parse.cpu_seconds:.2f}x")
        print(
            f"  {row.shape} N={row.n:,}: CPU seconds (user + system, workers included): {', '.join(cpu)}; "
            f"in CPU time: {', '.join(ratios)}",
            file=out,
        )
        if row.sdk is not None:
            print(
                f"  {row.shape} N={row.n:,}: SDK COCO has {row.sdk_images:,} images, {row.sdk_annotations:,} boxes; "
                f"its convert call alone took {row.sdk_convert_s:.2f} s; network attempts: "
                f"{row.sdk_network_attempts}",
                file=out,
            )
        if row.sdk_note:
            print(f"  {row.shape} N={row.n:,}: SDK {row.sdk_note}", file=out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command line options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--n", type=int, default=100_000, help="N the ratio and lines/s targets are judged at"
    )
    parser.add_argument("--sizes", default="10000,100000,250000", help="comma-separated task counts")
    parser.add_argument("--validate-lines", type=int, default=TARGET_VALIDATE_LINES, help="lines to validate")
    parser.add_argument(
        "--sdk-budget", type=float, default=300.0, help="skip the SDK above --n if it would take longer (s)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="sizes 2,000 and 5,000: a smoke check in seconds"
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the JSON results go")
    parser.add_argument(
        "--shapes", default=",".join(SHAPES), help=f"comma-separated task shapes, of {', '.join(SHAPES)}"
    )
    parser.add_argument("--parse-child", metavar="TASKS", help=argparse.SUPPRESS)
    parser.add_argument(
        "--sdk-child", nargs=4, metavar=("TASKS", "CONFIG", "OUT_DIR", "STATUS"), help=argparse.SUPPRESS
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print the table and write the JSON."""
    args = parse_args(argv)
    if args.sdk_child:
        return sdk_child(*args.sdk_child)
    if args.parse_child:
        return parse_child(args.parse_child)
    shapes = [shape for shape in args.shapes.split(",") if shape.strip()]
    if not shapes or set(shapes) - set(SHAPES):
        raise SystemExit(f"bench: --shapes takes {', '.join(SHAPES)}")
    if args.quick:
        sizes, headline_n, validate_lines = [2_000, 5_000], 5_000, 5_000
    else:
        sizes = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()} | {args.n})
        headline_n, validate_lines = args.n, args.validate_lines
    from machine import describe, speed  # noqa: PLC0415 (beside this script; tests load this file alone)

    figures = speed()  # before anything else runs
    cli = customlabels()
    rows: list[SizeRow] = []
    with tempfile.TemporaryDirectory(prefix="bench-core-") as tmp:
        work = Path(tmp)
        config = work / "config.xml"
        config.write_text(label_config())
        for shape in shapes:
            for n in sizes:
                print(f"bench: {shape} tasks, N={n:,} ...", file=sys.stderr, flush=True)
                reason = sdk_skip_reason(n, shape, headline_n, rows, args.sdk_budget)
                rows.append(bench_size(n, shape, work, cli, config, reason))
        print(f"bench: validate {validate_lines:,} lines ...", file=sys.stderr, flush=True)
        train = work / "validate.manifest"
        write_manifest(train, validate_lines)
        validate = measure(
            [*cli, "validate", str(train), "--output-dir", str(work / "validation")],
            work / "stderr.log",
            ok=(0, 1),
        )
    found = checks(rows, headline_n, validate, validate_lines)
    print(file=sys.stderr)
    print_table(rows, validate, validate_lines, found, sys.stdout)
    load = os.getloadavg()
    print(
        f"  load average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min) on "
        f"{os.cpu_count()} CPUs: above the CPU count, wall times measure the share each process got "
        "(the CPU times above do not)."
    )
    print(f"  {describe(figures)}")
    if args.quick:
        print("  --quick: sizes too small for the targets to mean much; this is a smoke check.")
    report = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "speed": figures,
        },
        "command": cli,
        "workers_env": os.environ.get("CUSTOMLABELS_WORKERS"),
        "load_average": os.getloadavg(),
        "quick": args.quick,
        "headline_n": headline_n,
        "sizes": [asdict(row) for row in rows],
        "validate": {"lines": validate_lines, **asdict(validate)},
        "targets": [asdict(check) for check in found],
        "all_pass": all(check.passed for check in found),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"  results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
