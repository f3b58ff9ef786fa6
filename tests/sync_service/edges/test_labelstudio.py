"""The Label Studio edge's authentication and retries, against an in-process Label Studio double
(``httpx.MockTransport``): personal access tokens refreshed before they expire and on a 401 (once), a
refused refresh raised at once, a forked child on its own connections, GETs retried and creates not.

The real-server version of the token path is ``tests/e2e/test_label_studio_tokens.py``.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from sync_service.edges import labelstudio
from sync_service.edges.labelstudio import LabelStudio, jwt_expiry
from sync_service.errors import LabelStudioError, SignInRefused

URL = "http://label-studio.test"
NOW = 1_800_000_000.0


def jwt(exp: float, kind: str = "access", serial: int = 0) -> str:
    """An unsigned JWT with these claims (the edge reads ``exp`` only; the server checks signatures)."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return (
        f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'token_type': kind, 'exp': exp, 'jti': serial})}.sig"
    )


PAT = jwt(NOW + 200 * 365 * 86400, kind="refresh")


@dataclass
class Clock:
    """A clock the test moves."""

    now: float = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeLabelStudio:
    """Answers the refresh endpoint with access tokens living ``lifetime`` seconds from ``clock``, and
    every other request with ``answer(request)``; records every request."""

    clock: Clock
    lifetime: float = 300.0
    answer: Callable[[httpx.Request], httpx.Response] = lambda _request: httpx.Response(
        200, json={"ok": True}
    )
    refresh_status: int = 200
    requests: list[httpx.Request] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            if request.url.path == "/api/token/refresh/":
                if self.refresh_status != 200:
                    return httpx.Response(self.refresh_status, json={"detail": "Token is blacklisted"})
                assert json.loads(request.content) == {"refresh": PAT}
                token = jwt(self.clock() + self.lifetime, serial=len(self.issued))
                self.issued.append(token)
                return httpx.Response(200, json={"access": token})
        return self.answer(request)

    def refreshes(self) -> int:
        return sum(1 for r in self.requests if r.url.path == "/api/token/refresh/")

    def calls(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]


def edge(fake: FakeLabelStudio, api_key: str = PAT, **kwargs: Any) -> LabelStudio:
    sleeps: list[float] = []
    return LabelStudio(
        URL,
        api_key,
        transport=httpx.MockTransport(fake.handle),
        clock=fake.clock,
        sleep=sleeps.append,
        **kwargs,
    )


def test_jwt_expiry_reads_the_payload_without_the_signature() -> None:
    assert jwt_expiry(jwt(NOW + 5)) == NOW + 5
    assert jwt_expiry("not-a-jwt") is None
    assert jwt_expiry("a.bm90IGpzb24.c") is None


def test_a_legacy_token_is_sent_as_is_and_never_refreshed() -> None:
    fake = FakeLabelStudio(Clock())
    ls = edge(fake, api_key="0123456789abcdef")
    ls.project(7)
    fake.clock.now += 3600
    ls.project(7)
    assert fake.refreshes() == 0
    assert [r.headers["Authorization"] for r in fake.requests] == ["Token 0123456789abcdef"] * 2


def test_the_access_token_is_refreshed_before_it_expires() -> None:
    """Read ``exp`` from the access token: with less than 30 s left, trade the PAT again first (no 401)."""
    fake = FakeLabelStudio(Clock())
    ls = edge(fake)
    ls.project(7)
    assert fake.refreshes() == 1
    first = fake.issued[0]
    fake.clock.now += 300 - 31  # 31 s left: still good
    ls.project(7)
    assert fake.refreshes() == 1
    fake.clock.now += 2  # 29 s left: refreshed before the request
    ls.project(7)
    assert fake.refreshes() == 2
    sent = [r.headers["Authorization"] for r in fake.calls("/api/projects/7")]
    assert sent == [f"Bearer {first}", f"Bearer {first}", f"Bearer {fake.issued[1]}"]


def test_a_401_refreshes_and_sends_the_request_again_once() -> None:
    """An access token refused before its time (revoked, the server's clock ahead): refreshed, then the
    request sent once more, with the new token."""
    fake = FakeLabelStudio(Clock())
    refused: set[str] = set()
    fake.answer = lambda request: (
        httpx.Response(401, json={"detail": "Given token not valid"})
        if request.headers["Authorization"].removeprefix("Bearer ") in refused
        else httpx.Response(200, json={"id": 7})
    )
    ls = edge(fake)
    ls.project(7)
    refused.add(fake.issued[0])
    assert ls.update_project(7, title="new") == {"id": 7}  # a PATCH too: a refused request did nothing
    assert fake.refreshes() == 2
    assert [r.method for r in fake.calls("/api/projects/7")] == ["GET", "PATCH", "PATCH"]


def test_a_401_that_persists_after_the_refresh_is_raised_without_a_loop() -> None:
    fake = FakeLabelStudio(Clock())
    fake.answer = lambda _request: httpx.Response(401, json={"detail": "Invalid token."})
    ls = edge(fake)
    with pytest.raises(LabelStudioError) as raised:
        ls.project(7)
    assert fake.refreshes() == 2  # the first access token, and one more after the 401
    assert len(fake.calls("/api/projects/7")) == 2
    assert (raised.value.method, raised.value.path, raised.value.status) == ("GET", "/api/projects/7", 401)


def test_a_refused_refresh_is_one_clear_error_and_no_retry_loop() -> None:
    fake = FakeLabelStudio(Clock(), refresh_status=401)
    ls = edge(fake)
    with pytest.raises(LabelStudioError) as raised:
        ls.project(7)
    assert fake.refreshes() == 1
    assert fake.calls("/api/projects/7") == []
    error = raised.value
    assert (error.method, error.path, error.status) == ("POST", "/api/token/refresh/", 401)
    assert "refused the personal access token" in str(error)
    assert PAT not in str(error)


def test_a_forked_child_makes_its_own_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker builds its edge in the parent; every RQ job is a forked child. The child must not send
    on the parent's pooled sockets: a changed pid gets a new HTTP client (the parent's is left alone)."""
    fake = FakeLabelStudio(Clock())
    ls = edge(fake)
    ls.project(7)
    parent = ls._http
    monkeypatch.setattr(labelstudio.os, "getpid", lambda: 999_999)
    child = ls._http
    assert child is not parent
    assert not parent.is_closed  # the parent's sockets are not closed under it
    ls.project(7)
    assert ls._http is child
    assert fake.refreshes() == 1  # the access token is still good: no need to trade again


def test_threads_share_one_refresh() -> None:
    """Export windows run in a thread pool: an expired token is refreshed once, not once per thread."""
    fake = FakeLabelStudio(Clock())
    ls = edge(fake)
    ls.project(7)
    fake.clock.now += 600
    barrier = threading.Barrier(8)
    errors: list[LabelStudioError] = []

    def read() -> None:
        barrier.wait()
        try:
            ls.project(7)
        except LabelStudioError as exc:  # collected: asserted below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert fake.refreshes() == 2


def test_gets_are_retried_on_5xx_a_bounded_number_of_times() -> None:
    fake = FakeLabelStudio(Clock())
    answers = iter([503, 502, 200])
    fake.answer = lambda _request: httpx.Response(next(answers), json={"id": 7})
    ls = edge(fake, api_key="legacy-token")
    assert ls.project(7) == {"id": 7}

    fake.answer = lambda _request: httpx.Response(500, text="boom")
    with pytest.raises(LabelStudioError) as raised:
        ls.project(8)
    assert len(fake.calls("/api/projects/8")) == labelstudio.GET_ATTEMPTS
    assert raised.value.status == 500


def test_gets_are_retried_on_connection_errors() -> None:
    fake = FakeLabelStudio(Clock())
    failures = [httpx.ReadError("reset"), httpx.ConnectError("refused")]

    def answer(request: httpx.Request) -> httpx.Response:
        if failures:
            raise failures.pop()
        return httpx.Response(200, json={"id": 7})

    fake.answer = answer
    assert edge(fake, api_key="legacy-token").project(7) == {"id": 7}
    assert len(fake.calls("/api/projects/7")) == 3


def test_a_create_is_not_sent_twice() -> None:
    """A POST that reached the server (a 5xx, a connection lost after sending) may have created the
    object: it is not sent again. Only a connection that never opened (nothing sent) is tried again."""
    fake = FakeLabelStudio(Clock())
    fake.answer = lambda _request: httpx.Response(502, text="bad gateway")
    ls = edge(fake, api_key="legacy-token")
    with pytest.raises(LabelStudioError) as raised:
        ls.create_project(title="Cats", label_config="<View/>")
    assert len(fake.calls("/api/projects/")) == 1
    assert (raised.value.method, raised.value.path, raised.value.status) == ("POST", "/api/projects/", 502)

    fake.requests.clear()
    fake.answer = lambda _request: (_ for _ in ()).throw(httpx.ReadError("connection reset"))
    with pytest.raises(LabelStudioError) as lost:
        ls.create_project(title="Cats", label_config="<View/>")
    assert len(fake.calls("/api/projects/")) == 1
    assert lost.value.status is None

    fake.requests.clear()
    unopened = [httpx.ConnectError("refused")]

    def answer(request: httpx.Request) -> httpx.Response:
        if unopened:
            raise unopened.pop()
        return httpx.Response(201, json={"id": 9, "title": "Cats"})

    fake.answer = answer
    assert ls.create_project(title="Cats", label_config="<View/>")["id"] == 9
    assert len(fake.calls("/api/projects/")) == 2


def test_lists_follow_pages_and_find_by_exact_title() -> None:
    fake = FakeLabelStudio(Clock())
    pages = {
        "1": {"results": [{"id": 1, "title": "Cats and dogs"}], "next": "page 2"},
        "2": {"results": [{"id": 2, "title": "Cats"}], "next": None},
    }
    fake.answer = lambda request: httpx.Response(200, json=pages[request.url.params["page"]])
    ls = edge(fake, api_key="legacy-token")
    assert ls.project_by_title("Cats") == {"id": 2, "title": "Cats"}
    assert fake.calls("/api/projects/")[0].url.params["title"] == "Cats"
    assert ls.project_by_title("Birds") is None


def test_a_missing_project_is_none_and_other_errors_raise() -> None:
    fake = FakeLabelStudio(Clock())
    fake.answer = lambda request: httpx.Response(404 if request.url.path.endswith("/7") else 403)
    ls = edge(fake, api_key="legacy-token")
    assert ls.find_project(7) is None
    assert not ls.project_exists(7)
    with pytest.raises(LabelStudioError):
        ls.find_project(8)


# ----------------------------------------------------------------------------------- people's sign-in


def login_double(password: str, seen: list[httpx.Request]) -> httpx.MockTransport:
    """Label Studio's login form: its CSRF cookie on GET, a session and a redirect for the right password
    with the cookie's token, the form again otherwise."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/user/login/" and request.method == "GET":
            return httpx.Response(200, text="<form>", headers={"Set-Cookie": "csrftoken=c5rf; Path=/"})
        if request.url.path == "/user/login/":
            form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
            if form.get("csrfmiddlewaretoken") != "c5rf" or "csrftoken=c5rf" not in request.headers.get(
                "cookie", ""
            ):
                return httpx.Response(403, text="CSRF")
            if form.get("password") == password:
                return httpx.Response(
                    302, headers={"Location": "/projects/", "Set-Cookie": "sessionid=s3ss; Path=/"}
                )
            return httpx.Response(200, text="<form> errors")
        if request.url.path == "/api/current-user/whoami":
            if request.headers.get("cookie") == "sessionid=s3ss":
                return httpx.Response(200, json={"id": 5, "email": "p@x.test"})
            return httpx.Response(401, json={"detail": "Authentication credentials were not provided."})
        return httpx.Response(404)

    return httpx.MockTransport(handle)


def test_sign_in_goes_through_the_login_form_and_the_session_reads_as_that_person() -> None:
    seen: list[httpx.Request] = []
    transport = login_double("right", seen)
    session = labelstudio.sign_in(URL, "p@x.test", "right", transport=transport)
    assert session == "s3ss"
    person = LabelStudio.signed_in(URL, session, transport=transport)
    assert person.whoami() == {"id": 5, "email": "p@x.test"}
    assert [r.method for r in seen[:2]] == ["GET", "POST"] and "Authorization" not in seen[-1].headers


def test_a_wrong_password_is_refused_not_an_outage() -> None:
    transport = login_double("right", [])
    with pytest.raises(SignInRefused):
        labelstudio.sign_in(URL, "p@x.test", "wrong", transport=transport)
    with pytest.raises(LabelStudioError) as ended:
        LabelStudio.signed_in(URL, "expired", transport=transport, attempts=1).whoami()
    assert ended.value.status == 401
