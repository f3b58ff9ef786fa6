"""Who is asking, and which projects Label Studio lets them see.

The service's users are Label Studio's: there is no user database here.

- The console signs a person in through Label Studio's own login form (:func:`edges.labelstudio.sign_in`):
  Label Studio checks the password and that the account is active. What the service keeps of it (the
  person's Label Studio session, their id and email, and the console's CSRF token) lives in Redis under
  a hash of a random session id, for :data:`SESSION_SECONDS`; the browser holds only that id, in Flask's
  signed cookie (HttpOnly, SameSite=Lax, Secure over https).
- Scripts and the ``customlabels project ...`` commands send ``Authorization: Bearer <token>``: the
  person's Label Studio token (legacy or personal access token), checked against Label Studio and
  remembered :data:`CHECK_SECONDS` under its hash; or the service API key (``CUSTOMLABELS_SERVICE_API_KEY``),
  which acts for every project.
- Whether a person may see a project is Label Studio's answer to ``GET /api/projects/<id>`` with their
  own credentials, remembered :data:`CHECK_SECONDS`.

No credential, session id or token is ever logged; logs name people by their Label Studio id and email.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson
from flask import Response, jsonify, request, session
from redis import Redis

from sync_service.config import Settings
from sync_service.edges.labelstudio import LabelStudio, sign_out
from sync_service.errors import LabelStudioError, SignInRefused
from sync_service.web import ext

SESSION_SECONDS = 8 * 3600
"""How long a console sign-in lasts (then the person signs in again), seconds."""
CHECK_SECONDS = 60.0
"""How long a token's check and a project's visibility are remembered, seconds: a revoked token, a
deactivated person or a project taken away stops working within this long."""
CHALLENGE = 'Bearer realm="customlabels"'
"""The ``WWW-Authenticate`` header of a 401 from the REST API."""
SESSION_KEY = "sid"
"""The key of the session id in Flask's cookie session."""
_TOKEN_RE = re.compile(r"^[A-Za-z0-9._~+/=-]{1,4096}$")  # what may be forwarded in a header at all

audit = logging.getLogger("sync_service.web.audit")
"""Who asked for what (never a credential)."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class Principal:
    """A person (or the service key) a request acts for.

    ``name`` says who in logs (never a credential); ``key`` identifies the credential in caches (a hash);
    ``ls`` asks Label Studio as that person (None for the service key, which sees every project).
    """

    name: str
    key: str
    ls: LabelStudio | None
    csrf: str = ""
    sid_hash: str = ""
    _seen: dict[int, bool] = field(default_factory=dict)

    @property
    def everything(self) -> bool:
        """Whether this is the service key (every project)."""
        return self.ls is None

    def can_see(self, project_id: int) -> bool:
        """Whether Label Studio lets this person see the project (its ``GET /api/projects/<id>``)."""
        if self.ls is None:
            return True
        if project_id not in self._seen:
            redis = ext.redis()
            key = f"cl:auth:see:{self.key}:{project_id}"
            cached = redis.get(key)
            if cached is None:
                seen = _ask(lambda ls: ls.find_project(project_id, fields=("id",)) is not None, self.ls)
                redis.set(key, b"1" if seen else b"0", px=int(CHECK_SECONDS * 1000))
            else:
                seen = cached == b"1"
            self._seen[project_id] = seen
        return self._seen[project_id]

    def visible(self) -> set[int] | None:
        """The ids of every Label Studio project this person sees (None: every project)."""
        if self.ls is None:
            return None
        redis = ext.redis()
        key = f"cl:auth:projects:{self.key}"
        cached = redis.get(key)
        if cached is not None:
            return set(orjson.loads(cached))
        ids = _ask(lambda ls: sorted(int(p["id"]) for p in ls.projects()), self.ls)
        redis.set(key, orjson.dumps(ids), px=int(CHECK_SECONDS * 1000))
        return set(ids)


def _ask(question: Any, ls: LabelStudio) -> Any:
    """Label Studio's answer to ``question(ls)``; a refusal of the credentials themselves (401) is
    :class:`SignInRefused`, a refusal of the object (403, 404) is no; an outage raises (503)."""
    try:
        return question(ls)
    except LabelStudioError as exc:
        if exc.status == 401:
            raise SignInRefused("Label Studio no longer accepts these credentials; sign in again") from None
        if exc.status in (403, 404):
            return False
        raise


def _who(user: dict[str, Any]) -> str:
    email = str(user.get("email") or user.get("username") or "?")[:200]
    return f"user {user.get('id', '?')} ({email})"


# --------------------------------------------------------------------------------------- bearer tokens


def bearer() -> Principal | None:
    """The principal of the request's ``Authorization: Bearer`` (or ``Token``) header; None without one.
    Raises :class:`SignInRefused` for a token Label Studio refuses."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() not in ("bearer", "token") or not token:
        return None
    if not _TOKEN_RE.fullmatch(token):
        raise SignInRefused("the bearer token is malformed")
    settings = ext.settings()
    if settings.service_api_key and hmac.compare_digest(token.encode(), settings.service_api_key.encode()):
        return Principal(name="the service API key", key="service", ls=None)
    return token_principal(ext.redis(), settings, token)


def token_principal(redis: Redis, settings: Settings, token: str) -> Principal:
    """The person a Label Studio token belongs to, checked against Label Studio (remembered briefly,
    under the token's hash); :class:`SignInRefused` when Label Studio refuses it."""
    key = _digest(token)
    ls = LabelStudio(settings.ls_url, token, attempts=1, timeout=15.0)
    cached = redis.get(f"cl:auth:token:{key}")
    if cached is not None:
        user = orjson.loads(cached)
    else:
        user = _ask(lambda client: client.whoami(), ls)
        if not isinstance(user, dict):
            raise SignInRefused("Label Studio does not accept this token")
        user = {"id": user.get("id"), "email": user.get("email")}
        redis.set(f"cl:auth:token:{key}", orjson.dumps(user), px=int(CHECK_SECONDS * 1000))
    return Principal(name=_who(user), key=key, ls=ls)


def unauthorized(message: str) -> Response:
    """The REST API's 401, with the challenge that says how to authenticate."""
    response = jsonify(error="Unauthorized", message=message)
    response.status_code = 401
    response.headers["WWW-Authenticate"] = CHALLENGE
    return response


# ------------------------------------------------------------------------------------- console sessions


def _session_key(sid_hash: str) -> str:
    return f"cl:auth:session:{sid_hash}"


def start_session(redis: Redis, ls_session: str, user: dict[str, Any]) -> str:
    """Record a signed-in person; returns the new session id (for the cookie only: never logged)."""
    sid = secrets.token_urlsafe(32)
    record = {
        "ls_session": ls_session,
        "user": {"id": user.get("id"), "email": user.get("email")},
        "csrf": secrets.token_urlsafe(32),
    }
    redis.set(_session_key(_digest(sid)), orjson.dumps(record), ex=SESSION_SECONDS)
    return sid


def session_principal() -> Principal | None:
    """The signed-in person of the request's console session; None when there is none (or it ended)."""
    sid = session.get(SESSION_KEY)
    if not isinstance(sid, str) or not sid:
        return None
    sid_hash = _digest(sid)
    raw = ext.redis().get(_session_key(sid_hash))
    if raw is None:
        return None
    record = orjson.loads(raw)
    ls = LabelStudio.signed_in(ext.settings().ls_url, str(record["ls_session"]), attempts=1, timeout=15.0)
    return Principal(name=_who(record["user"]), key=f"s{sid_hash}", ls=ls, csrf=str(record["csrf"]),
                     sid_hash=sid_hash)  # fmt: skip


def end_session(principal: Principal | None) -> None:
    """Forget the console session (here and in Label Studio) and clear the cookie."""
    session.clear()
    if principal is None or not principal.sid_hash:
        return
    raw = ext.redis().getdel(_session_key(principal.sid_hash))
    if raw is not None:
        sign_out(ext.settings().ls_url, str(orjson.loads(raw)["ls_session"]))


def csrf_ok(principal: Principal, given: str | None) -> bool:
    """Whether a posted form carries this session's CSRF token."""
    return bool(principal.csrf) and hmac.compare_digest((given or "").encode(), principal.csrf.encode())
