"""Personal access tokens on the real Label Studio: an organization with legacy tokens off, a PAT made
for its admin, and the edge (the bootstrap, a publish, reads) still working after the access token it
started with has expired, and in a forked child (an RQ job).

How this avoids waiting 5 minutes: Label Studio 1.23.2 does not set SIMPLE_JWT, and simplejwt reads its
``ACCESS_TOKEN_LIFETIME`` from Django settings only (no environment variable), so the access token's
lifetime cannot be shortened from outside. Instead:

* an edge clock the test moves past the access token's ``exp`` (minus the 30 s margin): the edge must
  trade its PAT again before the request, and the real server must accept the new token;
* a truly expired access token: the claims of a real one with ``exp`` in the past, signed with the
  server's own key (Label Studio keeps its ``SECRET_KEY`` in the data dir's ``.env``; simplejwt signs
  HS256 with it). The server itself refuses it (asserted first: 401), exactly as it refuses the access
  token of a worker that has run for 5 minutes. The edge is handed it while its clock says it is fresh,
  so only the real 401 can tell it to refresh: the publish succeeding proves the refresh-and-retry path
  against the server, not against a double.

Legacy tokens are switched off for the session's organization by its admin (``POST /api/jwt/settings``,
as in Label Studio's settings page) and switched back on afterwards: starting a second Label Studio
without the legacy flag would cost half a minute and 360 MB for the same organization setting.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest

from converters.labelconfig import build_label_config
from plugin.localstack.processes import free_port
from sync_service.config import Settings
from sync_service.domain.bootstrap import create_project, delete_project
from sync_service.domain.context import Context, make_context
from sync_service.edges.labelstudio import LabelStudio, jwt_expiry
from sync_service.edges.state import ProjectState
from sync_service.errors import LabelStudioError
from tests.builders import choices
from tests.realparts import LabelStudioServer


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def _server_key(label_studio: LabelStudioServer) -> str:
    """The SECRET_KEY Label Studio generated into its data dir at the first start (it signs JWTs)."""
    for line in (label_studio.process.data_dir / ".env").read_text().splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "SECRET_KEY":
            return value.strip().strip("'\"")
    raise AssertionError("no SECRET_KEY in Label Studio's .env")


def _expired_copy(access: str, key: str) -> str:
    """``access`` with ``exp`` a minute in the past, signed (HS256) with the server's key."""
    header = access.split(".", maxsplit=1)[0]
    claims = {**_claims(access), "exp": int(time.time()) - 60}
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(key.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{_b64(signature)}"


class Clock:
    """The edge's clock, moved by the test (real time plus ``offset``)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _admin(url: str, authorization: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": authorization}, timeout=30)


def _legacy_tokens(url: str, authorization: str, *, enabled: bool) -> None:
    with _admin(url, authorization) as admin:
        admin.post(
            "/api/jwt/settings", json={"api_tokens_enabled": True, "legacy_api_tokens_enabled": enabled}
        ).raise_for_status()


def _access_for(url: str, pat: str) -> str:
    response = httpx.post(f"{url}/api/token/refresh/", json={"refresh": pat}, timeout=30)
    response.raise_for_status()
    return str(response.json()["access"])


@pytest.fixture
def pat(label_studio: LabelStudioServer) -> Iterator[str]:
    """A personal access token of the admin, in an organization whose legacy tokens are off (restored
    on, and the PAT revoked, afterwards)."""
    url, legacy = label_studio.url, f"Token {label_studio.token}"
    with _admin(url, legacy) as admin:
        for old in admin.get("/api/token/").raise_for_status().json():  # one valid PAT per user at most
            admin.post("/api/token/blacklist/", json={"refresh": old["token"]})
        token = str(admin.post("/api/token/").raise_for_status().json()["token"])
    _legacy_tokens(url, legacy, enabled=False)
    try:
        refused = httpx.get(f"{url}/api/projects/", headers={"Authorization": legacy}, timeout=30)
        assert refused.status_code == 401, refused.text  # the organization really has legacy tokens off
        yield token
    finally:
        bearer = f"Bearer {_access_for(url, token)}"
        _legacy_tokens(url, bearer, enabled=True)
        with _admin(url, bearer) as admin:
            admin.post("/api/token/blacklist/", json={"refresh": token})


@pytest.fixture
def ctx(
    label_studio: LabelStudioServer,
    pat: str,
    redis_url: str,
    s3: Any,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Context]:
    """Connections with the PAT as the API key (as a deployment on a new Label Studio has them)."""
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)
    settings = Settings(
        ls_url=label_studio.url,
        ls_api_key=pat,
        redis_url=redis_url,
        s3_endpoint=s3.endpoint_url,
        s3_region="us-east-1",
        bucket=bucket,
        prefix="customlabels",
        webhook_secret="token-test-webhook-secret-0123456789",
        queue=f"tokens-{uuid.uuid4().hex[:8]}",
        service_url=f"http://127.0.0.1:{free_port()}",  # nobody listens: the webhooks are lost
    )
    made = make_context(settings)
    yield made
    for info in made.projects.scan():
        delete_project(settings, made.projects, info)


def _project(ctx: Context) -> tuple[int, str, int]:
    """A project made by the bootstrap with the PAT, one task in it; (project id, manifest key, task id)."""
    made = create_project(
        ctx.settings,
        ctx.projects,
        title=f"Tokens {uuid.uuid4().hex[:6]}",
        labels=["cat"],
        s3_credentials=("testing", "testing"),
    )
    pid = made.info.label_studio_project_id
    ctx.ls.update_project(pid, label_config=build_label_config(choices=["cat", "dog"]))
    ref = f"s3://{ctx.settings.bucket}/{ctx.projects.key(made.info, 'images/a.jpg')}"
    (task_id,) = ctx.ls.import_tasks(pid, [{"data": {"image": ref, "dataset": "train"}}])
    return pid, ctx.projects.key(made.info, "train.manifest"), task_id


def test_the_edge_refreshes_the_access_token_before_it_expires(ctx: Context, pat: str) -> None:
    """The edge's clock moved past the access token's life: it trades the PAT again, unprompted, and the
    real server takes the new token (reads and the Data Manager tabs the bootstrap made)."""
    pid, _key, _task = _project(ctx)
    clock = Clock()
    ls = LabelStudio(ctx.settings.ls_url, pat, clock=clock)
    assert ls.project(pid, fields=("id",))["id"] == pid
    first = ls._access
    assert first is not None
    expiry = jwt_expiry(first)
    assert expiry is not None and 0 < expiry - time.time() <= 300  # Label Studio's 5 minutes
    clock.offset = expiry - time.time() + 1  # the edge's clock: the token expired a second ago
    assert {view["data"]["title"] for view in ls.views(pid)} >= {"Training dataset", "Test dataset"}
    assert ls._access not in (None, first)


def test_a_publish_succeeds_after_its_access_token_expired(
    ctx: Context, pat: str, label_studio: LabelStudioServer
) -> None:
    """A worker's edge holding an access token the server has let expire (a real 401, not a double):
    the publish refreshes once, sends the request again and writes the manifest."""
    pid, key, task_id = _project(ctx)
    clock = Clock()
    ls = LabelStudio(ctx.settings.ls_url, pat, clock=clock)
    publisher = replace(ctx, ls=ls).publisher
    publisher.publish(pid, force=True)
    live = ls._access
    assert live is not None

    expired = _expired_copy(live, _server_key(label_studio))
    refused = httpx.get(
        f"{ctx.settings.ls_url}/api/projects/{pid}", headers={"Authorization": f"Bearer {expired}"}
    )
    assert refused.status_code == 401, refused.text  # the server itself says: expired
    ls._access = expired  # what a 5-minute-old worker holds; its clock (the edge's) still trusts it

    ctx.ls.create_annotation(task_id, [choices("dog")])
    ProjectState(ctx.redis, pid).note(dirty=[task_id])  # what the (lost) webhook would have recorded
    result = publisher.publish(pid)
    assert result is not None and result.published
    assert b'"class-name":"dog"' in (ctx.storage.get_bytes(key) or b"")
    assert ls._access not in (None, expired, live)


def test_a_refused_pat_is_one_clear_error(ctx: Context, pat: str) -> None:
    """A PAT the server does not know (here: garbled): one LabelStudioError naming the refresh, at once."""
    header, claims, signature = pat.split(".")
    garbled = f"{header}.{claims}.{signature[::-1]}"
    with pytest.raises(LabelStudioError) as raised:
        LabelStudio(ctx.settings.ls_url, garbled).project_exists(1)
    assert (raised.value.method, raised.value.path, raised.value.status) == (
        "POST",
        "/api/token/refresh/",
        401,
    )
    assert garbled not in str(raised.value) and pat not in str(raised.value)


def test_a_forked_child_reads_on_its_own_connections(ctx: Context, pat: str) -> None:
    """The worker builds its edge before RQ forks a child per job: the child reads through the edge it
    inherited (on connections of its own) and the parent's keeps working after."""
    pid, _key, _task = _project(ctx)
    ls = LabelStudio(ctx.settings.ls_url, pat)
    assert ls.project_exists(pid)  # the parent's pool now holds a live connection
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, reported through its exit code
        try:
            ok = ls.project_exists(pid) and ls.project(pid, fields=("id",))["id"] == pid
        except BaseException:  # noqa: BLE001 - any failure in the child is its exit code
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ls.project_exists(pid)
