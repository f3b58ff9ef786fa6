"""A stream of annotation work on one project, made through Label Studio's REST API from a thread.

Each step is one of: import tasks (some with annotations already on them, which only TASKS_CREATED
reports), annotate a task, change an annotation, delete an annotation, delete a task. Choices on every
annotation, boxes on some. Every task shows its own image (a manifest has one line per image), taken from
a pool and given back when its task is deleted. Errors (Label Studio away, a task deleted meanwhile) are
counted and the stream goes on.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

from tests.builders import choices, rect

Size = tuple[int, int]


class ChangeStream:
    """Changes project ``project_id`` until stopped. ``pool`` maps an image's ``s3://`` ref to its displayed
    size (None: no box on it); refs in use by the project's tasks at start are read from the export."""

    def __init__(
        self,
        url: str,
        token: str,
        project_id: int,
        pool: dict[str, Size | None],
        *,
        seed: int = 0,
        pause: tuple[float, float] = (0.02, 0.15),
    ) -> None:
        self.url = url
        self.token = token
        self.project_id = project_id
        self.pool = dict(pool)
        self.pause = pause
        self.rng = random.Random(seed)
        self.tasks: dict[int, str] = {}  # task id -> image ref
        self.annotations: dict[int, int] = {}  # annotation id -> task id
        # Task ids left alone; rebound, never changed in place (the thread reads it).
        self.spared: frozenset[int] = frozenset()
        self.ops: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._stale = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = httpx.Client(
            base_url=url, headers={"Authorization": f"Token {token}"}, timeout=httpx.Timeout(15, connect=2)
        )

    # ----------------------------------------------------------------------------------------- control

    def start(self) -> ChangeStream:
        """Learn the project's tasks, then change them from a thread."""
        self._learn()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name="change-stream")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the step under way."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
            assert not self._thread.is_alive(), "the change stream did not stop"
            self._thread = None

    def run_for(
        self, seconds: float, *, until: Callable[[], bool] | None = None, at_most: float = 30
    ) -> None:
        """Start, let it run ``seconds`` (and then, with ``until``, on until it says so, ``at_most``
        seconds in all), stop."""
        started = time.monotonic()
        self.start()
        time.sleep(seconds)
        while until is not None and not until() and time.monotonic() - started < at_most:
            time.sleep(0.2)
        self.stop()

    @property
    def total(self) -> int:
        """Steps that Label Studio accepted."""
        return sum(self.ops.values())

    # ------------------------------------------------------------------------------------------- steps

    def _learn(self) -> None:
        """Read the project's tasks and annotations from the export (after a failed import, an import
        may have happened anyway: its images must not be given to a second task)."""
        export = self._http.get(
            f"/api/projects/{self.project_id}/export",
            params={"exportType": "JSON", "download_all_tasks": "true"},
            timeout=60,
        )
        export.raise_for_status()
        self.tasks.clear()
        self.annotations.clear()
        for task in export.json():
            self.tasks[int(task["id"])] = task["data"]["image"]
            for annotation in task.get("annotations") or ():
                self.annotations[int(annotation["id"])] = int(task["id"])
        self._stale = False

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._stale:
                try:
                    self._learn()
                except httpx.HTTPError:
                    self._stop.wait(0.5)
                    continue
            step = self._choose()
            try:
                step()
                self.ops[step.__name__.lstrip("_")] += 1
            except httpx.HTTPStatusError as exc:
                self.errors[f"{step.__name__.lstrip('_')}: HTTP {exc.response.status_code}"] += 1
            except httpx.HTTPError as exc:
                self.errors[type(exc).__name__] += 1
                self._stale = True
                self._stop.wait(0.5)  # Label Studio away: do not spin
            self._stop.wait(self.rng.uniform(*self.pause))

    def _choose(self) -> Any:
        free = self._free_refs()
        if not self.tasks:
            return self._import
        steps = [self._annotate] * 4 + [self._update] * 3 + [self._delete_annotation] * 2
        steps += [self._delete_task] * (3 if not free else 2)
        if free:
            steps += [self._import] * 3
        return self.rng.choice(steps)

    def _free_refs(self) -> list[str]:
        used = set(self.tasks.values())
        return sorted(ref for ref in self.pool if ref not in used)

    def _result(self, ref: str) -> list[dict[str, Any]]:
        out = [choices(self.rng.choice(["indoor", "outdoor"]), rid=f"c{self.rng.randrange(10**6)}")]
        size = self.pool.get(ref)
        if size is not None:
            for _ in range(self.rng.choice([0, 1, 1, 2])):
                w, h = round(self.rng.uniform(5, 40), 2), round(self.rng.uniform(5, 40), 2)
                x, y = round(self.rng.uniform(0, 100 - w), 2), round(self.rng.uniform(0, 100 - h), 2)
                label = self.rng.choice(["cat", "dog"])
                out.append(rect(label, x, y, w, h, size=size, rid=f"r{self.rng.randrange(10**6)}"))
        return out

    def _import(self) -> None:
        refs = self.rng.sample(
            self._free_refs(), k=min(len(self._free_refs()), self.rng.choice([1, 1, 2, 3]))
        )
        items: list[dict[str, Any]] = []
        for ref in refs:
            item: dict[str, Any] = {"data": {"image": ref, "dataset": self.rng.choice(["train", "test"])}}
            if self.rng.random() < 0.3:
                item["annotations"] = [{"result": self._result(ref)}]
            items.append(item)
        response = self._http.post(
            f"/api/projects/{self.project_id}/import", params={"return_task_ids": "true"}, json=items
        )
        response.raise_for_status()
        for task_id, ref in zip(response.json()["task_ids"], refs, strict=True):
            self.tasks[int(task_id)] = ref

    def _open_tasks(self) -> list[int]:
        return sorted(t for t in self.tasks if t not in self.spared)

    def _open_annotations(self) -> list[int]:
        return sorted(a for a, t in self.annotations.items() if t not in self.spared)

    def _annotate(self) -> None:
        open_tasks = self._open_tasks()
        if not open_tasks:
            return
        task_id = self.rng.choice(open_tasks)
        response = self._http.post(
            f"/api/tasks/{task_id}/annotations",
            json={"result": self._result(self.tasks[task_id]), "was_cancelled": False, "ground_truth": False},
        )
        if response.status_code == 404:
            self.tasks.pop(task_id, None)
        response.raise_for_status()
        self.annotations[int(response.json()["id"])] = task_id

    def _update(self) -> None:
        open_annotations = self._open_annotations()
        if not open_annotations:
            return self._annotate()
        annotation_id = self.rng.choice(open_annotations)
        ref = self.tasks.get(self.annotations[annotation_id], "")
        response = self._http.patch(f"/api/annotations/{annotation_id}", json={"result": self._result(ref)})
        if response.status_code == 404:
            self.annotations.pop(annotation_id, None)
        response.raise_for_status()
        return None

    def _delete_annotation(self) -> None:
        open_annotations = self._open_annotations()
        if not open_annotations:
            return self._annotate()
        annotation_id = self.rng.choice(open_annotations)
        response = self._http.delete(f"/api/annotations/{annotation_id}")
        if response.status_code in (204, 404):
            self.annotations.pop(annotation_id, None)
        response.raise_for_status()
        return None

    def _delete_task(self) -> None:
        open_tasks = self._open_tasks()
        if not open_tasks:
            return
        task_id = self.rng.choice(open_tasks)
        response = self._http.delete(f"/api/tasks/{task_id}")
        if response.status_code in (204, 404):
            self.tasks.pop(task_id, None)
            for annotation_id in [a for a, t in self.annotations.items() if t == task_id]:
                del self.annotations[annotation_id]
        response.raise_for_status()
