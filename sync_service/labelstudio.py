"""The Label Studio edge of the worker: the one module that reads projects and tasks over HTTP.

Tasks are read in Label Studio's JSON export shape (``data.image`` stays the ``s3://`` URL, annotations
included), streamed: a 100,000-task export is never held in memory whole. Webhook payloads are only
hints; everything a publish writes comes from here.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any

import httpx

from converters.jsonio import iter_json_records
from sync_service.errors import LabelStudioError

EXPORT_BATCH = 200  # task ids per selective export request (the ids go in the query string)


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

    def __init__(self, url: str, api_key: str, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._api_key = api_key
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

    def project(self, project_id: int) -> dict[str, Any]:
        """The project object (title, label_config, ...)."""
        result: dict[str, Any] = self._call("GET", f"/api/projects/{project_id}").json()
        return result

    def project_exists(self, project_id: int) -> bool:
        """Whether the project is there (a 404 says no; other failures raise)."""
        try:
            self._http.request("GET", f"/api/projects/{project_id}", headers=self._headers).raise_for_status()
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
        """Every task of the project (or just ``task_ids``), in export shape and task id order, streamed."""
        if task_ids is None:
            yield from self._export(project_id, [])
            return
        ids = sorted(set(task_ids))
        for start in range(0, len(ids), EXPORT_BATCH):
            yield from self._export(project_id, ids[start : start + EXPORT_BATCH])

    def _export(self, project_id: int, ids: list[int]) -> Iterator[dict[str, Any]]:
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("exportType", "JSON"),
            ("download_all_tasks", "true"),
        ]
        params.extend(("ids[]", i) for i in ids)
        path = f"/api/projects/{project_id}/export"
        try:
            with self._http.stream("GET", path, params=params, headers=self._headers) as response:
                if response.status_code >= 400:
                    response.read()
                    raise LabelStudioError(
                        f"Label Studio export of project {project_id} answered {response.status_code}: "
                        f"{response.text[:300]}"
                    )
                stream = io.BufferedReader(_ChunkReader(response.iter_bytes()), buffer_size=1 << 16)
                for record in iter_json_records(stream, source=f"{self.url}{path}"):
                    if isinstance(record.value, dict):
                        yield record.value
        except httpx.HTTPError as exc:
            raise LabelStudioError(f"Label Studio export of project {project_id} failed: {exc}") from exc

    def update_annotation(self, annotation_id: int, result: list[dict[str, Any]]) -> None:
        """Replace an annotation's result."""
        self._call("PATCH", f"/api/annotations/{annotation_id}", json={"result": result})

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

    def download(self, url: str) -> bytes:
        """The bytes behind a file URL of Label Studio's (an uploaded image, ``/data/upload/...``)."""
        return self._call("GET", url).content


def reachable(url: str) -> bool:
    """Whether the Label Studio at ``url`` answers its health check (no token needed)."""
    try:
        return httpx.get(f"{url.rstrip('/')}/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False
