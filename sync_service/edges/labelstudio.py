"""The Label Studio edge of the worker: the one module that reads projects and tasks over HTTP.

Tasks are read in Label Studio's JSON export shape (``data.image`` stays the ``s3://`` URL, annotations
included), streamed: a 100,000-task export is never held in memory whole. Webhook payloads are only
hints; everything a publish writes comes from here.
"""

from __future__ import annotations

import io
import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import orjson

from converters.jsonio import iter_json_records
from sync_service.errors import LabelStudioError

EXPORT_BATCH = 900
"""Most task ids per export request. Each ``ids[]`` is a query field and Django refuses more than 1,000
of them (400 ``TooManyFieldsSent``). A proxy with a shorter request line in front of Label Studio (nginx:
8 KB) answers 414: the window is then halved until it passes."""

EXPORT_CONCURRENCY = 2
"""Export requests kept in flight while the tasks of an earlier one are handed out: Label Studio
serializes the next windows while the caller converts this one (and, with several server processes, as
its Docker image's uwsgi runs, serializes them in parallel)."""

SPARSE_SPAN = 2.0
"""A full export covers the span between the project's first and last task id with windows when that
span is at most this many times its task count; sparser ids (tasks interleaved with other projects')
are read with one whole-project export request instead."""


class _ChunkReader(io.RawIOBase):
    """A raw byte stream over an iterator of chunks (an HTTP response body)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            try:
                self._rest = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def auth_header(api_key: str) -> dict[str, str]:
    """The Authorization header for a legacy token (``Token``); personal access tokens are refreshed."""
    return {"Authorization": f"Token {api_key}"}


class LabelStudio:
    """A small client for what the sync service reads from and writes to Label Studio."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 60.0,
        export_concurrency: int = EXPORT_CONCURRENCY,
    ) -> None:
        self.url = url.rstrip("/")
        self._api_key = api_key
        self.export_concurrency = max(1, export_concurrency)
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self._headers = self._authenticate()

    def _authenticate(self) -> dict[str, str]:
        # A personal access token is a JWT refresh token: trade it for a short-lived access token.
        if self._api_key.count(".") == 2:
            response = self._call("POST", "/api/token/refresh", json={"refresh": self._api_key}, auth=False)
            return {"Authorization": f"Bearer {response.json()['access']}"}
        return auth_header(self._api_key)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def _call(self, method: str, path: str, *, auth: bool = True, **kwargs: Any) -> httpx.Response:
        headers = self._headers if auth else {}
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise LabelStudioError(
                f"Label Studio at {self.url} unreachable ({method} {path}): {exc}"
            ) from exc
        if response.status_code >= 400:
            raise LabelStudioError(
                f"Label Studio {method} {path} answered {response.status_code}: {response.text[:300]}"
            )
        return response

    def project(self, project_id: int, *, fields: Sequence[str] = ()) -> dict[str, Any]:
        """The project object (title, label_config, ...), or only its ``fields``: Label Studio then skips
        counting the project's tasks and annotations (80 ms instead of 200 ms at 20,000 tasks, growing)."""
        params = {"include": ",".join(fields)} if fields else None
        result: dict[str, Any] = self._call("GET", f"/api/projects/{project_id}", params=params).json()
        return result

    def project_exists(self, project_id: int) -> bool:
        """Whether the project is there (a 404 says no; other failures raise)."""
        try:
            self._http.request(
                "GET", f"/api/projects/{project_id}", params={"include": "id"}, headers=self._headers
            ).raise_for_status()
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code == 404:
                return False
            raise LabelStudioError(f"Label Studio GET /api/projects/{project_id}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise LabelStudioError(f"Label Studio at {self.url} unreachable: {exc}") from exc
        return True

    def export_tasks(
        self, project_id: int, task_ids: Iterable[int] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every task of the project (or just ``task_ids``), in export shape and task id order, streamed.

        The export endpoint is the one that gives tasks as the JSON export has them (``data.image`` the
        ``s3://`` URL, whole annotations with ids and ``updated_at``). It is read in windows of at most
        :data:`EXPORT_BATCH` ``ids[]``, :data:`EXPORT_CONCURRENCY` requests in flight, so memory holds a
        few windows, never the project. A whole project's ids are not listed first (Label Studio lists
        them about as slowly as it exports the tasks): the windows cover the ids from its first task to
        its last (two one-task Data Manager queries); the export skips ids of other projects. Sparse ids
        are read with one whole-project request instead, parsed as it streams.
        """
        if task_ids is None:
            span = self._id_span(project_id)
            if span is None:
                return
            first, last, count = span
            if last - first + 1 > SPARSE_SPAN * count:
                yield from self._export(project_id, [])
                return
            windows: Iterable[Sequence[int]] = (
                range(start, min(start + EXPORT_BATCH, last + 1))
                for start in range(first, last + 1, EXPORT_BATCH)
            )
        else:
            ids = sorted(set(task_ids))
            windows = (ids[start : start + EXPORT_BATCH] for start in range(0, len(ids), EXPORT_BATCH))
        yield from self._export_windows(project_id, windows)

    def _id_span(self, project_id: int) -> tuple[int, int, int] | None:
        """(first task id, last task id, task count) of the project; None when it has no task."""
        ends = []
        for ordering in ("tasks:id", "-tasks:id"):
            page = self._call(
                "GET",
                "/api/tasks",
                params={
                    "project": project_id,
                    "page": 1,
                    "page_size": 1,
                    "fields": "task_only",
                    "resolve_uri": "false",
                    "query": json.dumps({"ordering": [ordering]}),
                },
            ).json()
            tasks = page.get("tasks") or []
            if not tasks or not page.get("total"):
                return None
            ends.append(int(tasks[0]["id"]))
        return min(ends), max(ends), int(page["total"])

    def _export_windows(self, project_id: int, windows: Iterable[Sequence[int]]) -> Iterator[dict[str, Any]]:
        """The tasks of each window in turn, with the next windows' requests in flight meanwhile."""
        pool = ThreadPoolExecutor(self.export_concurrency, thread_name_prefix="ls-export")
        pending: deque[Future[list[dict[str, Any]]]] = deque()
        try:
            for window in windows:
                pending.append(pool.submit(self._export_window, project_id, window))
                if len(pending) > self.export_concurrency:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _export_window(self, project_id: int, ids: Sequence[int]) -> list[dict[str, Any]]:
        """The tasks among ``ids`` (a window of the project's ids), sorted by id."""
        # Brackets stay unencoded: 13 bytes an id instead of 19, for proxies' request-line limits.
        query = "&".join(["exportType=JSON&download_all_tasks=true", *(f"ids[]={i}" for i in ids)])
        path = f"/api/projects/{project_id}/export"
        try:
            response = self._http.get(f"{path}?{query}", headers=self._headers)
        except httpx.HTTPError as exc:
            raise LabelStudioError(f"Label Studio export of project {project_id} failed: {exc}") from exc
        if response.status_code in (414, 431) and len(ids) > 1:  # request line too long for a proxy
            half = len(ids) // 2
            return self._export_window(project_id, ids[:half]) + self._export_window(project_id, ids[half:])
        if response.status_code >= 400:
            raise LabelStudioError(
                f"Label Studio export of project {project_id} answered {response.status_code}: "
                f"{response.text[:300]}"
            )
        try:
            tasks = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise LabelStudioError(f"Label Studio export of project {project_id}: not JSON: {exc}") from exc
        if not isinstance(tasks, list):
            raise LabelStudioError(f"Label Studio export of project {project_id}: not a list of tasks")
        found = [t for t in tasks if isinstance(t, dict)]
        found.sort(key=lambda t: int(t.get("id") or 0))
        return found

    def _export(self, project_id: int, ids: list[int]) -> Iterator[dict[str, Any]]:
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("exportType", "JSON"),
            ("download_all_tasks", "true"),
        ]
        params.extend(("ids[]", i) for i in ids)
        yield from self._stream_objects(
            f"/api/projects/{project_id}/export", params, what=f"export of project {project_id}"
        )

    def _stream_objects(self, path: str, params: Any, *, what: str) -> Iterator[dict[str, Any]]:
        """The objects of the JSON array a GET of ``path`` answers, parsed as the response streams in."""
        try:
            with self._http.stream("GET", path, params=params, headers=self._headers) as response:
                if response.status_code >= 400:
                    response.read()
                    raise LabelStudioError(
                        f"Label Studio {what} answered {response.status_code}: {response.text[:300]}"
                    )
                stream = io.BufferedReader(_ChunkReader(response.iter_bytes()), buffer_size=1 << 16)
                for record in iter_json_records(stream, source=f"{self.url}{path}"):
                    if isinstance(record.value, dict):
                        yield record.value
        except httpx.HTTPError as exc:
            raise LabelStudioError(f"Label Studio {what} failed: {exc}") from exc

    def update_annotation(self, annotation_id: int, result: list[dict[str, Any]]) -> dict[str, Any]:
        """Replace an annotation's result; returns the annotation as it now is (a new ``updated_at``)."""
        updated: dict[str, Any] = self._call(
            "PATCH", f"/api/annotations/{annotation_id}", json={"result": result}
        ).json()
        return updated

    def update_project(self, project_id: int, **fields: Any) -> dict[str, Any]:
        """Change project fields (``label_config``, ``title``...); returns the project."""
        result: dict[str, Any] = self._call("PATCH", f"/api/projects/{project_id}", json=fields).json()
        return result

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> list[int]:
        """Import tasks (with their annotations and predictions); returns the new task ids in order."""
        if not tasks:
            return []
        response = self._call(
            "POST", f"/api/projects/{project_id}/import", params={"return_task_ids": "true"}, json=tasks
        ).json()
        return [int(i) for i in response.get("task_ids") or []]

    def update_task_data(self, task_id: int, data: dict[str, Any]) -> None:
        """Replace a task's data object."""
        self._call("PATCH", f"/api/tasks/{task_id}", json={"data": data})

    def delete_task(self, task_id: int) -> None:
        """Delete a task (and its annotations)."""
        self._call("DELETE", f"/api/tasks/{task_id}")

    def delete_annotation(self, annotation_id: int) -> None:
        """Delete an annotation."""
        self._call("DELETE", f"/api/annotations/{annotation_id}")

    def delete_prediction(self, prediction_id: int) -> None:
        """Delete a prediction."""
        self._call("DELETE", f"/api/predictions/{prediction_id}")

    def create_annotation(self, task_id: int, result: list[dict[str, Any]]) -> int:
        """Add an annotation made of ``result`` to a task; returns its id."""
        body = {"result": result, "was_cancelled": False, "ground_truth": False}
        made: dict[str, Any] = self._call("POST", f"/api/tasks/{task_id}/annotations/", json=body).json()
        return int(made["id"])

    def create_prediction(
        self, task_id: int, result: list[dict[str, Any]], score: float | None = None
    ) -> int:
        """Add a prediction made of ``result`` to a task; returns its id."""
        body: dict[str, Any] = {"task": task_id, "result": result}
        if score is not None:
            body["score"] = score
        made: dict[str, Any] = self._call("POST", "/api/predictions/", json=body).json()
        return int(made["id"])

    def update_prediction(self, prediction_id: int, result: list[dict[str, Any]]) -> dict[str, Any]:
        """Replace a prediction's result; returns the prediction as it now is (a new ``updated_at``)."""
        updated: dict[str, Any] = self._call(
            "PATCH", f"/api/predictions/{prediction_id}", json={"result": result}
        ).json()
        return updated

    def predictions(
        self, *, task_id: int | None = None, project_id: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """The predictions of one task or of a whole project, whole (the JSON export lists a task's
        predictions by id only), streamed."""
        params = {"task": task_id} if task_id is not None else {"project": project_id}
        yield from self._stream_objects("/api/predictions/", params, what=f"predictions of {params}")

    def download(self, url: str) -> bytes | None:
        """The bytes behind a file URL of Label Studio's (an uploaded image, ``/data/upload/...``), or
        None when Label Studio no longer has the file (404); other failures raise."""
        try:
            response = self._http.request("GET", url, headers=self._headers)
        except httpx.HTTPError as exc:
            raise LabelStudioError(f"Label Studio at {self.url} unreachable (GET {url}): {exc}") from exc
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise LabelStudioError(f"Label Studio GET {url} answered {response.status_code}")
        return response.content


def reachable(url: str) -> bool:
    """Whether the Label Studio at ``url`` answers its health check (no token needed)."""
    try:
        return httpx.get(f"{url.rstrip('/')}/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False
