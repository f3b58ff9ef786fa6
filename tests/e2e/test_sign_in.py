"""Signing in with Label Studio, against the real one: people see and act on only what Label Studio lets
them see, a wrong password or a deactivated account gets nothing, a console page's form token is useless
without its session, and sources outside the allow-list are refused with nothing read."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import StackFactory
from tests.e2e.ls_users import make_person, set_active
from tests.e2e.stack import CUSTOMLABELS, Stack
from tests.realparts import LabelStudioServer
from tests.signin import bearer, console_session, form_token


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    return make_stack()


def _project(stack: Stack) -> tuple[int, str]:
    title = f"Signed {uuid.uuid4().hex[:6]}"
    done = subprocess.run(
        [CUSTOMLABELS, "project", "create", "--title", title, "--labels", "cat,dog", "--json"],
        env=stack.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return int(json.loads(done.stdout)["project"]), title


def _jobs(stack: Stack, project_id: int) -> int:
    import redis  # noqa: PLC0415 - only this helper needs it

    client = redis.Redis.from_url(stack.env["CUSTOMLABELS_REDIS_URL"])
    try:
        return int(client.llen(f"cl:p:{project_id}:console-jobs"))
    finally:
        client.close()


def _forget_checks(stack: Stack) -> None:
    """Forget the service's remembered checks of tokens and projects (not the sessions)."""
    import redis  # noqa: PLC0415 - only this helper needs it

    client = redis.Redis.from_url(stack.env["CUSTOMLABELS_REDIS_URL"])
    try:
        for pattern in ("cl:auth:see:*", "cl:auth:projects:*", "cl:auth:token:*"):
            for key in client.scan_iter(pattern):
                client.delete(key)
    finally:
        client.close()


def test_each_person_sees_what_label_studio_lets_them_see(
    stack: Stack, label_studio: LabelStudioServer
) -> None:
    pid, title = _project(stack)
    member = make_person(label_studio, organization="admin")
    outsider = make_person(label_studio, organization="own")  # another organization

    admin = console_session(stack.url, label_studio.username, label_studio.password)
    colleague = console_session(stack.url, member.email, member.password)
    stranger = console_session(stack.url, outsider.email, outsider.password)
    try:
        assert title in admin.get("/console/").text
        assert title in colleague.get("/console/").text  # the community edition: one organization sees all
        assert colleague.get(f"/console/projects/{pid}").status_code == 200
        assert member.email in colleague.get("/console/").text  # the page says who is signed in

        assert title not in stranger.get("/console/").text
        hidden, missing = stranger.get(f"/console/projects/{pid}"), stranger.get("/console/projects/999999")
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json()["message"].replace(str(pid), "N") == missing.json()["message"].replace(
            "999999", "N"
        )
        page_token = form_token(stranger.get("/console/").text)  # the stranger's own, valid token
        before = _jobs(stack, pid)
        acted = stranger.post(f"/console/projects/{pid}/actions/resync", data={"token": page_token})
        assert acted.status_code == 404 and _jobs(stack, pid) == before
    finally:
        for browser in (admin, colleague, stranger):
            browser.close()

    status = f"{stack.url}/api/v1/projects/{pid}/status"
    assert httpx.get(status, headers=bearer(label_studio.token), timeout=30).status_code == 200
    assert httpx.get(status, headers=bearer(member.token), timeout=30).status_code == 200
    assert httpx.get(status, headers=bearer(outsider.token), timeout=30).status_code == 404
    refused = httpx.post(
        f"{stack.url}/api/v1/projects/{pid}/resync", headers=bearer(outsider.token), timeout=30
    )
    assert refused.status_code == 404
    unknown = httpx.get(status, headers=bearer("0" * 40), timeout=30)
    assert unknown.status_code == 401 and unknown.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_password_or_a_deactivated_account_cannot_sign_in(
    stack: Stack, label_studio: LabelStudioServer
) -> None:
    person = make_person(label_studio, organization="admin")
    for password in (person.password + "x", ""):
        with httpx.Client(base_url=stack.url, timeout=30) as browser:
            page = browser.get("/console/sign-in")
            answer = browser.post(
                "/console/sign-in", data={"email": person.email, "password": password, "token": form_token(page.text)}
            )  # fmt: skip
            assert answer.status_code == 302 and "/console/sign-in" in answer.headers["location"]
            assert "did not accept" in browser.get(answer.headers["location"]).text
            assert browser.get("/console/").status_code == 302  # still not signed in
    browser = console_session(stack.url, person.email, person.password)  # the right one works
    try:
        assert browser.get("/console/").status_code == 200
        set_active(label_studio, person, False)
        with pytest.raises(AssertionError, match="the sign-in was refused"):
            console_session(stack.url, person.email, person.password)
        _forget_checks(stack)  # as CHECK_SECONDS passing would
        ended = browser.get("/console/")  # a session made before: Label Studio no longer accepts it
        assert ended.status_code == 302 and "/console/sign-in" in ended.headers["location"]
        assert browser.get("/console/").status_code == 302
    finally:
        browser.close()
    answer = httpx.get(f"{stack.url}/api/v1/projects/1/status", headers=bearer(person.token), timeout=30)
    assert answer.status_code == 401


def test_a_page_token_is_useless_without_its_session(stack: Stack, label_studio: LabelStudioServer) -> None:
    pid, _ = _project(stack)
    member = make_person(label_studio, organization="admin")
    admin = console_session(stack.url, label_studio.username, label_studio.password)
    other = console_session(stack.url, member.email, member.password)
    try:
        stolen = form_token(admin.get(f"/console/projects/{pid}").text)
        before = _jobs(stack, pid)
        with httpx.Client(base_url=stack.url, timeout=30) as thief:  # no session at all
            answer = thief.post(f"/console/projects/{pid}/actions/resync", data={"token": stolen})
            assert answer.status_code == 302 and "/console/sign-in" in answer.headers["location"]
        answer = other.post(f"/console/projects/{pid}/actions/resync", data={"token": stolen})
        assert answer.status_code == 403  # another person's session: the token is not theirs
        assert _jobs(stack, pid) == before
        answer = admin.post(f"/console/projects/{pid}/actions/resync", data={"token": stolen})
        assert answer.status_code == 302 and _jobs(stack, pid) == before + 1
    finally:
        admin.close()
        other.close()


def test_the_console_refuses_sources_outside_the_allow_list_and_reads_nothing(
    stack: Stack, label_studio: LabelStudioServer, s3: object, tmp_path: Path
) -> None:
    pid, _ = _project(stack)
    fifo = tmp_path / "passwd.fifo"
    os.mkfifo(fifo)  # opening it for reading would block the request: the answer proves it was not
    admin = console_session(stack.url, label_studio.username, label_studio.password)
    try:
        token = form_token(admin.get(f"/console/projects/{pid}").text)
        before = _jobs(stack, pid)
        for action, field, location in (
            ("from_manifest", "location", str(fifo)),
            ("from_manifest", "location", f"file://{fifo}"),
            ("from_manifest", "location", "s3://another-bucket/train.manifest"),
            ("from_s3", "uri", "s3://another-bucket/images/"),
            ("from_s3", "uri", f"file://{tmp_path}/"),
        ):
            answer = admin.post(
                f"/console/projects/{pid}/actions/{action}", data={"token": token, field: location}, follow_redirects=True
            )  # fmt: skip
            assert answer.status_code == 200 and "CUSTOMLABELS_ALLOWED_BUCKETS" in answer.text, location
        assert _jobs(stack, pid) == before
    finally:
        admin.close()
