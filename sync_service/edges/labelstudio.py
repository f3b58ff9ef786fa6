"""The Label Studio edge of the worker: the one module that reads projects and tasks over HTTP.

Tasks are read in Label Studio's JSON export shape (``data.image`` stays the ``s3://`` URL, annotations
included), streamed: a 100,000-task export is never held in memory whole. Webhook payloads are only
hints; everything a publish writes comes from here.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from converters.jsonio import iter_json_records
from sync_service.errors import LabelStudioError, SignInRefused

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


GET_ATTEMPTS = 3
"""Tries of a GET (connection errors, 5xx) before its error is raised."""

BACKOFF = 0.5
"""Seconds before the second try of a request; doubled before each next one."""

REFRESH_MARGIN = 30.0
"""Seconds before an access token expires at which it is traded for a new one (clocks drift, requests
take time: a token that expires on the way is refused)."""

LIST_PAGE = 100
"""Objects per page when listing (projects)."""

SESSION_COOKIE = "sessionid"
"""Label Studio's (Django's) session cookie."""
CSRF_COOKIE = "csrftoken"
"""Label Studio's (Django's) CSRF cookie, which its login form checks against the form's token."""
LOGIN_PATH = "/user/login/"
ID_PAGE = 1000
"""Tasks per page when only their ids are wanted (the tasks changed since the last reconcile)."""


def _bare(path: str) -> str:
    """``path`` without its query string (an export's query lists 900 ids)."""
    return path.split("?", 1)[0]


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


def is_personal_access_token(api_key: str) -> bool:
    """Whether ``api_key`` is a personal access token (a JWT: three dot-separated parts), not a legacy
    token (hexadecimal, no dots)."""
    return api_key.count(".") == 2


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (seconds since the epoch), read from its payload without checking the
    signature (the server checks it; we only need to know when to refresh); None when unreadable."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def _detail(response: httpx.Response) -> str:
    """Label Studio's reason for an error, on one line (its ``detail`` when it gives one)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict) and body.get("detail"):
        body = body["detail"]
    text = " ".join(str(body or "no reason given").split())
    return text if len(text) <= 200 else text[:200] + "..."


class LabelStudio:
    """The client for everything the product reads from and writes to Label Studio: the one place that
    knows its URLs, its authentication and when a request may be tried again.

    Authentication: a legacy token is sent as ``Token <key>``. A personal access token (a JWT refresh
    token) is traded at ``POST /api/token/refresh/`` for an access token (5 minutes on Label Studio), sent
    as ``Bearer``; it is traded again when less than :data:`REFRESH_MARGIN` seconds of it remain and when
    Label Studio answers 401 (then the request is sent once more, once). One process may share the client
    between threads (the export windows); a forked child (an RQ job) builds its own connections on first
    use instead of reusing the parent's sockets.

    Retries: GETs are tried :data:`GET_ATTEMPTS` times on connection errors and 5xx answers, with
    :data:`BACKOFF` seconds doubling between tries. Other methods are tried again only when the
    connection could not be opened (nothing was sent): a create sent twice makes two objects.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 60.0,
        export_concurrency: int = EXPORT_CONCURRENCY,
        attempts: int = GET_ATTEMPTS,
        backoff: float = BACKOFF,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url.rstrip("/")
        self._api_key = api_key
        self._timeout = timeout
        self.export_concurrency = max(1, export_concurrency)
        self._attempts = max(1, attempts)
        self._backoff = backoff
        self._transport = transport
        self._clock = clock
        self._sleep = sleep
        self._pat = is_personal_access_token(api_key)
        self._session: str | None = None  # a person's Label Studio session (see signed_in)
        self._access: str | None = None
        self._expires = 0.0
        self._client: httpx.Client | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._client_lock = threading.Lock()

    @classmethod
    def signed_in(cls, url: str, session: str, **options: Any) -> LabelStudio:
        """A client acting as the person whose Label Studio session (``sessionid``, from :func:`sign_in`)
        this is: Label Studio answers it with what that person may see. Reads only (Label Studio checks
        CSRF on a session's writes)."""
        client = cls(url, "", **options)
        client._session = session
        return client

    @property
    def _http(self) -> httpx.Client:
        """This process's HTTP client, made on first use, and made again in a forked child (an RQ job):
        the parent's pooled sockets stay the parent's, and a child writing on them garbles both
        conversations."""
        pid = os.getpid()
        if self._pid != pid:
            # New locks too: a lock some other thread of the parent held at the fork stays held here.
            self._lock = threading.Lock()
            self._client_lock = threading.Lock()
            self._client = None
            self._pid = pid
        client = self._client
        if client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = httpx.Client(
                        base_url=self.url, timeout=self._timeout, transport=self._transport
                    )
                client = self._client
        return client

    def close(self) -> None:
        """Close the HTTP connections (those of this process)."""
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client = None

    # ------------------------------------------------------------------------------- authentication

    def _auth_headers(self) -> dict[str, str]:
        """The Authorization header to send now, refreshing the access token when it is about to expire."""
        if self._session is not None:
            return {"Cookie": f"{SESSION_COOKIE}={self._session}"}
        if not self._pat:
            return auth_header(self._api_key)
        _ = self._http  # after a fork, this makes the child's own lock before it is taken
        with self._lock:
            if self._access is None or self._expires - self._clock() < REFRESH_MARGIN:
                self._refresh()
            return {"Authorization": f"Bearer {self._access}"}

    def _refresh(self) -> None:
        """Trade the personal access token for a new access token (the caller holds the lock). A refused
        refresh raises at once: the token itself is wrong, and asking again would not change that."""
        path = "/api/token/refresh/"
        response = self._send("POST", path, {}, json={"refresh": self._api_key})
        if response.status_code >= 400:
            detail = _detail(response)
            raise LabelStudioError(
                f"Label Studio at {self.url} refused the personal access token (POST {path} answered "
                f"{response.status_code}: {detail}); make a new one (Account & Settings)",
                method="POST",
                path=path,
                status=response.status_code,
                detail=detail,
            )
        try:
            access = str(response.json()["access"])
        except (ValueError, KeyError, TypeError) as exc:
            raise LabelStudioError(
                f"Label Studio POST {path}: no access token in the answer", method="POST", path=path
            ) from exc
        self._access = access
        # No readable expiry: assume the shortest lifetime Label Studio gives (5 minutes).
        self._expires = jwt_expiry(access) or self._clock() + 300.0

    def _expire(self, refused: str) -> None:
        """Forget the access token Label Studio just refused (unless another thread already replaced it)."""
        with self._lock:
            if self._access == refused:
                self._access = None

    # ------------------------------------------------------------------------------------- requests

    def _send(
        self, method: str, path: str, headers: dict[str, str], *, stream: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """One request with its retries (see the class); returns the last answer, whatever its status."""
        idempotent = method in ("GET", "HEAD")
        delay = self._backoff
        for attempt in range(1, self._attempts + 1):
            last = attempt == self._attempts
            try:
                request = self._http.build_request(method, path, headers=headers, **kwargs)
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                if last or not (idempotent or isinstance(exc, httpx.ConnectError)):
                    raise LabelStudioError(
                        f"Label Studio at {self.url} unreachable ({method} {_bare(path)}): {exc}",
                        method=method,
                        path=_bare(path),
                    ) from exc
            else:
                if not (idempotent and response.status_code >= 500 and not last):
                    return response
                response.close()
            self._sleep(delay)
            delay *= 2
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _request(
        self,
        method: str,
        path: str,
        *,
        auth: bool = True,
        allow: Collection[int] = (),
        stream: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request, authenticated (a 401 on an access token: refreshed and sent once more);
        raise :class:`LabelStudioError` on a status of 400 or more that is not in ``allow``."""
        headers = self._auth_headers() if auth else {}
        response = self._send(method, path, headers, stream=stream, **kwargs)
        if response.status_code == 401 and auth and self._pat:
            response.close()
            self._expire(headers["Authorization"].removeprefix("Bearer "))
            response = self._send(method, path, self._auth_headers(), stream=stream, **kwargs)
        if response.status_code >= 400 and response.status_code not in allow:
            if stream:
                response.read()
                response.close()
            detail = _detail(response)
            raise LabelStudioError(
                f"Label Studio {method} {_bare(path)} answered {response.status_code}: {detail}",
                method=method,
                path=_bare(path),
                status=response.status_code,
                detail=detail,
            )
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of an authenticated request's answer."""
        response = self._request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise LabelStudioError(
                f"Label Studio {method} {_bare(path)}: the answer is not JSON",
                method=method,
                path=_bare(path),
            ) from exc

    def _list(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every object of a list endpoint, following its pages when it pages (``results``, ``next``)."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self._json("GET", path, params={**params, "page": page, "page_size": LIST_PAGE})
            if isinstance(body, list):  # endpoints without pages answer the whole list
                return [item for item in body if isinstance(item, dict)]
            found.extend(item for item in body.get("results") or () if isinstance(item, dict))
            if not body.get("next"):
                return found
            page += 1

    # ------------------------------------------------------------------------ health and identity

    def health(self) -> dict[str, Any]:
        """``GET /health`` (no token): ``{"status": "UP"}`` when Label Studio serves."""
        result: dict[str, Any] = self._json("GET", "/health", auth=False)
        return result

    def version(self) -> dict[str, Any]:
        """``GET /api/version/`` (no token): the release (``release``) and its parts' versions."""
        result: dict[str, Any] = self._json("GET", "/api/version/", auth=False)
        return result

    def whoami(self) -> dict[str, Any]:
        """The person the credentials belong to (``id``, ``email``, ``username``...); a refusal raises
        :class:`LabelStudioError` with its ``status`` (401: not signed in, or a wrong token)."""
        result: dict[str, Any] = self._json("GET", "/api/current-user/whoami")
        return result

    def check_token(self) -> None:
        """Make sure the API key authenticates (a page of one project); raises the refusal otherwise."""
        self._request("GET", "/api/projects/", params={"page_size": 1})

    # ------------------------------------------------------------------------------------ projects

    def project(self, project_id: int, *, fields: Sequence[str] = ()) -> dict[str, Any]:
        """The project object (title, label_config, ...), or only its ``fields``: Label Studio then skips
        counting the project's tasks and annotations (80 ms instead of 200 ms at 20,000 tasks, growing)."""
        params = {"include": ",".join(fields)} if fields else None
        result: dict[str, Any] = self._request("GET", f"/api/projects/{project_id}", params=params).json()
        return result

    def project_exists(self, project_id: int) -> bool:
        """Whether the project is there (a 404 says no; other failures raise)."""
        return self.find_project(project_id, fields=("id",)) is not None

    def find_project(self, project_id: int, *, fields: Sequence[str] = ()) -> dict[str, Any] | None:
        """The project (or only its ``fields``), or None when Label Studio has no such project (404)."""
        params = {"include": ",".join(fields)} if fields else None
        response = self._request("GET", f"/api/projects/{project_id}", params=params, allow=(404,))
        if response.status_code == 404:
            return None
        result: dict[str, Any] = response.json()
        return result

    def projects(self, *, title: str | None = None) -> list[dict[str, Any]]:
        """Every project the token sees (or those whose title contains ``title``), all pages."""
        return self._list("/api/projects/", {"title": title} if title else {})

    def project_by_title(self, title: str) -> dict[str, Any] | None:
        """The project titled exactly ``title``, or None."""
        for project in self.projects(title=title):
            if project.get("title") == title:
                return project
        return None

    def create_project(self, *, title: str, label_config: str, **fields: Any) -> dict[str, Any]:
        """Create a project (sent once: a create is never tried again); returns it."""
        body = {"title": title, "label_config": label_config, **fields}
        result: dict[str, Any] = self._json("POST", "/api/projects/", json=body)
        return result

    def delete_project(self, project_id: int) -> bool:
        """Delete a project with its tasks, storages, webhooks and tabs; False when it was not there."""
        return self._request("DELETE", f"/api/projects/{project_id}/", allow=(404,)).status_code != 404

    # ---------------------------------------------------------------- Data Manager views (tabs)

    def views(self, project_id: int) -> list[dict[str, Any]]:
        """The project's Data Manager tabs (``id``, ``data`` with ``title`` and ``filters``)."""
        return self._list("/api/dm/views/", {"project": project_id})

    def create_view(self, project_id: int, data: dict[str, Any]) -> dict[str, Any]:
        """Add a Data Manager tab (``data``: ``title``, ``filters``...); returns it."""
        result: dict[str, Any] = self._json(
            "POST", "/api/dm/views/", json={"project": project_id, "data": data}
        )
        return result

    def update_view(self, view_id: int, project_id: int, data: dict[str, Any]) -> dict[str, Any]:
        """Replace a Data Manager tab's ``data`` (``title``, ``filters``...); returns it."""
        result: dict[str, Any] = self._json(
            "PATCH", f"/api/dm/views/{view_id}/", json={"project": project_id, "data": data}
        )
        return result

    # ---------------------------------------------------------------------------------- webhooks

    def webhooks(self, project_id: int) -> list[dict[str, Any]]:
        """The project's webhooks (``id``, ``url``, ``headers``, ``actions``...)."""
        return self._list("/api/webhooks/", {"project": project_id})

    def create_webhook(self, project_id: int, *, url: str, **fields: Any) -> dict[str, Any]:
        """Add a webhook to the project (``send_payload``, ``headers``, ``actions``...); returns it."""
        result: dict[str, Any] = self._json(
            "POST", "/api/webhooks/", json={"project": project_id, "url": url, **fields}
        )
        return result

    def update_webhook(self, webhook_id: int, **fields: Any) -> dict[str, Any]:
        """Change webhook fields (``url``, ``headers``...); returns the webhook."""
        result: dict[str, Any] = self._json("PATCH", f"/api/webhooks/{webhook_id}/", json=fields)
        return result

    def delete_webhook(self, webhook_id: int) -> bool:
        """Delete a webhook; False when it was not there."""
        return self._request("DELETE", f"/api/webhooks/{webhook_id}/", allow=(404,)).status_code != 404

    # ------------------------------------------------------------------------- S3 import storages

    def s3_storages(self, project_id: int) -> list[dict[str, Any]]:
        """The project's S3 import storages (``id``, ``bucket``, ``prefix``, ``s3_endpoint``...). A
        project Label Studio does not have raises with status 404."""
        return self._list("/api/storages/s3/", {"project": project_id})

    def create_s3_storage(self, project_id: int, *, bucket: str, **fields: Any) -> dict[str, Any]:
        """Add an S3 import storage to the project; ``fields`` use the wire names (``s3_endpoint``,
        ``regex_filter``, ``use_blob_urls``, ``presign_ttl`` in minutes...). Returns the storage."""
        result: dict[str, Any] = self._json(
            "POST", "/api/storages/s3/", json={"project": project_id, "bucket": bucket, **fields}
        )
        return result

    def update_s3_storage(self, storage_id: int, **fields: Any) -> dict[str, Any]:
        """Change S3 import storage fields (``s3_endpoint``...); returns the storage."""
        result: dict[str, Any] = self._json("PATCH", f"/api/storages/s3/{storage_id}", json=fields)
        return result

    def sync_s3_storage(self, storage_id: int) -> dict[str, Any]:
        """Scan the storage's bucket now (inside the request): one task per new object; returns the
        storage with its sync status."""
        result: dict[str, Any] = self._json("POST", f"/api/storages/s3/{storage_id}/sync")
        return result

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
            page = self._request(
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

    def _task_page(
        self, project_id: int, filters: Sequence[dict[str, Any]], *, page: int = 1, size: int = 1
    ) -> dict[str, Any]:
        """One page of the project's tasks (``id`` order) that pass the Data Manager ``filters`` (all of
        them), without annotations or predictions; ``total`` counts every task that passes."""
        query = {"filters": {"conjunction": "and", "items": list(filters)}, "ordering": ["tasks:id"]}
        params = {
            "project": project_id,
            "page": page,
            "page_size": size,
            "fields": "task_only",
            "resolve_uri": "false",
            "query": json.dumps(query),
        }
        result: dict[str, Any] = self._request("GET", "/api/tasks", params=params).json()
        return result

    def tasks_updated_since(self, project_id: int, since: datetime) -> dict[int, str]:
        """Id -> ``updated_at`` of the project's tasks whose ``updated_at`` is later than ``since`` (UTC),
        through the Data Manager filter ``filter:tasks:updated_at`` / ``greater``: Label Studio reads only
        those tasks (without their annotations)."""
        value = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        filters = [
            {"filter": "filter:tasks:updated_at", "operator": "greater", "type": "Datetime", "value": value}
        ]
        found: dict[int, str] = {}
        page = 1
        while True:
            body = self._task_page(project_id, filters, page=page, size=ID_PAGE)
            tasks = [
                t for t in body.get("tasks") or () if isinstance(t, dict) and isinstance(t.get("id"), int)
            ]
            found.update((int(t["id"]), str(t.get("updated_at") or "")) for t in tasks)
            if not tasks or len(found) >= int(body.get("total") or 0):
                return found
            page += 1

    def count_tasks(self, project_id: int, *, above: int | None = None, below: int | None = None) -> int:
        """How many tasks the project has (with an id greater than ``above`` and less than ``below``, when
        given): one counting query, no task read."""
        filters = [
            {"filter": "filter:tasks:id", "operator": operator, "type": "Number", "value": bound}
            for operator, bound in (("greater", above), ("less", below))
            if bound is not None
        ]
        return int(self._task_page(project_id, filters).get("total") or 0)

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
        # A request line too long for a proxy (414, 431): the window is halved until it passes.
        too_long = (414, 431) if len(ids) > 1 else ()
        response = self._request("GET", f"{path}?{query}", allow=too_long)
        if response.status_code in too_long:
            half = len(ids) // 2
            return self._export_window(project_id, ids[:half]) + self._export_window(project_id, ids[half:])
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
        response = self._request("GET", path, params=params, stream=True)
        try:
            stream = io.BufferedReader(_ChunkReader(response.iter_bytes()), buffer_size=1 << 16)
            for record in iter_json_records(stream, source=f"{self.url}{path}"):
                if isinstance(record.value, dict):
                    yield record.value
        except httpx.HTTPError as exc:
            raise LabelStudioError(f"Label Studio {what} failed: {exc}", method="GET", path=path) from exc
        finally:
            response.close()

    def update_annotation(self, annotation_id: int, result: list[dict[str, Any]]) -> dict[str, Any]:
        """Replace an annotation's result; returns the annotation as it now is (a new ``updated_at``)."""
        updated: dict[str, Any] = self._request(
            "PATCH", f"/api/annotations/{annotation_id}", json={"result": result}
        ).json()
        return updated

    def update_project(self, project_id: int, **fields: Any) -> dict[str, Any]:
        """Change project fields (``label_config``, ``title``...); returns the project."""
        result: dict[str, Any] = self._request("PATCH", f"/api/projects/{project_id}", json=fields).json()
        return result

    def import_tasks(self, project_id: int, tasks: list[dict[str, Any]]) -> list[int]:
        """Import tasks (with their annotations and predictions); returns the new task ids in order."""
        if not tasks:
            return []
        response = self._request(
            "POST", f"/api/projects/{project_id}/import", params={"return_task_ids": "true"}, json=tasks
        ).json()
        return [int(i) for i in response.get("task_ids") or []]

    def update_task_data(self, task_id: int, data: dict[str, Any]) -> None:
        """Replace a task's data object."""
        self._request("PATCH", f"/api/tasks/{task_id}", json={"data": data})

    def delete_task(self, task_id: int) -> None:
        """Delete a task (and its annotations)."""
        self._request("DELETE", f"/api/tasks/{task_id}")

    def delete_annotation(self, annotation_id: int) -> None:
        """Delete an annotation."""
        self._request("DELETE", f"/api/annotations/{annotation_id}")

    def delete_prediction(self, prediction_id: int) -> None:
        """Delete a prediction."""
        self._request("DELETE", f"/api/predictions/{prediction_id}")

    def create_annotation(self, task_id: int, result: list[dict[str, Any]]) -> int:
        """Add an annotation made of ``result`` to a task; returns its id."""
        body = {"result": result, "was_cancelled": False, "ground_truth": False}
        made: dict[str, Any] = self._request("POST", f"/api/tasks/{task_id}/annotations/", json=body).json()
        return int(made["id"])

    def create_prediction(
        self, task_id: int, result: list[dict[str, Any]], score: float | None = None
    ) -> int:
        """Add a prediction made of ``result`` to a task; returns its id."""
        body: dict[str, Any] = {"task": task_id, "result": result}
        if score is not None:
            body["score"] = score
        made: dict[str, Any] = self._request("POST", "/api/predictions/", json=body).json()
        return int(made["id"])

    def update_prediction(self, prediction_id: int, result: list[dict[str, Any]]) -> dict[str, Any]:
        """Replace a prediction's result; returns the prediction as it now is (a new ``updated_at``)."""
        updated: dict[str, Any] = self._request(
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
        response = self._request("GET", url, allow=(404,))
        return None if response.status_code == 404 else response.content


def sign_in(
    url: str,
    email: str,
    password: str,
    *,
    timeout: float = 15.0,
    transport: httpx.BaseTransport | None = None,
) -> str:
    """Sign a person in through Label Studio's own login form, as a browser does (its CSRF cookie and
    token, then the form): Label Studio checks the password and that the account is active. Returns the
    person's new Label Studio session id (a secret: keep it server-side, never log it); raises
    :class:`SignInRefused` when Label Studio does not let them in, :class:`LabelStudioError` when it
    cannot be reached or answers oddly."""
    base = url.rstrip("/")
    try:
        with httpx.Client(
            base_url=base, timeout=timeout, transport=transport, follow_redirects=False
        ) as http:
            page = http.get(LOGIN_PATH)
            csrf = http.cookies.get(CSRF_COOKIE)
            if page.status_code != 200 or not csrf:
                raise LabelStudioError(
                    f"Label Studio GET {LOGIN_PATH} answered {page.status_code} without its login form",
                    method="GET",
                    path=LOGIN_PATH,
                    status=page.status_code,
                )
            answer = http.post(
                LOGIN_PATH,
                data={"email": email, "password": password, "csrfmiddlewaretoken": csrf},
                # Django checks the Referer of a form posted over https.
                headers={"Referer": f"{base}{LOGIN_PATH}", "X-CSRFToken": csrf},
            )
            session = answer.cookies.get(SESSION_COOKIE) or http.cookies.get(SESSION_COOKIE)
    except httpx.TransportError as exc:
        raise LabelStudioError(
            f"Label Studio at {base} unreachable (sign-in): {type(exc).__name__}",
            method="POST",
            path=LOGIN_PATH,
        ) from None
    # Success is a redirect with a session; a wrong password or an inactive account is the form again.
    if answer.status_code in (301, 302, 303) and session:
        return session
    if answer.status_code in (200, 400, 401, 403):
        raise SignInRefused(
            "Label Studio did not accept this email and password (or the account is not active)"
        )
    raise LabelStudioError(
        f"Label Studio POST {LOGIN_PATH} answered {answer.status_code}",
        method="POST",
        path=LOGIN_PATH,
        status=answer.status_code,
    )


def sign_out(url: str, session: str, *, timeout: float = 5.0) -> None:
    """End a Label Studio session :func:`sign_in` made (best effort: an unreachable server keeps it until
    it expires there)."""
    with contextlib.suppress(httpx.HTTPError):  # it expires in Label Studio by itself
        httpx.get(
            f"{url.rstrip('/')}/logout",
            headers={"Cookie": f"{SESSION_COOKIE}={session}"},
            timeout=timeout,
            follow_redirects=False,
        )


def reachable(url: str) -> bool:
    """Whether the Label Studio at ``url`` answers its health check (no token needed)."""
    try:
        return httpx.get(f"{url.rstrip('/')}/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False
