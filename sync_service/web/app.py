"""The Flask app factory: webhooks, the REST API and health checks, with JSON errors throughout.

A request that finds Redis, S3 or Label Studio away answers 503 with a ``Retry-After`` header and logs
one line naming what was away (never a URL's password, never a traceback): a 500 means a bug.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from datetime import timedelta

from flask import Flask, Request, Response, jsonify, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from redis import Redis
from werkzeug.exceptions import HTTPException

from sync_service.config import Settings, load_settings
from sync_service.jobs.publish import queue_for
from sync_service.web.api import bp as api_bp
from sync_service.web.auth import SESSION_SECONDS, audit
from sync_service.web.console import bp as console_bp
from sync_service.web.health import bp as health_bp
from sync_service.web.openapi import bp as openapi_bp
from sync_service.web.rekognition import bp as rekognition_bp
from sync_service.web.unavailable import UNAVAILABLE, unavailable
from sync_service.web.webhooks import bp as webhooks_bp


class _CookieSessions(SecureCookieSessionInterface):
    """Flask's cookie sessions, opened without building the signing serializer (tens of microseconds,
    on every request) when the request carries no session cookie: the webhook never does."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        # Secure whenever the console is served over https (configured so, or this request came so).
        return bool(super().get_cookie_secure(app) or request.is_secure)


def _audit_to_stderr() -> None:
    """Who asked for what reaches the service's log (gunicorn shows only warnings of its own)."""
    if not audit.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        audit.addHandler(handler)
        audit.setLevel(logging.INFO)
        audit.propagate = False


def create_app(settings: Settings | None = None, *, redis: Redis | None = None) -> Flask:
    """Build the service's Flask app; ``settings`` default to the environment's (see ``config``)."""
    settings = settings or load_settings()
    app = Flask(__name__)
    # Werkzeug refuses bigger bodies with 413 before a view reads them.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_webhook_bytes
    # The cookie holds the console's session id and flash messages (the rest is in Redis, see auth);
    # its signing key is derived, never logged.
    app.secret_key = hashlib.sha256(settings.webhook_secret.encode() + b"\x00console-session").digest()
    app.session_interface = _CookieSessions()
    app.config.update(
        SESSION_COOKIE_NAME="customlabels_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.service_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=SESSION_SECONDS),
    )
    _audit_to_stderr()
    connection = redis if redis is not None else Redis.from_url(settings.redis_url)
    app.extensions["customlabels"] = {
        "settings": settings,
        "redis": connection,
        "queue": queue_for(settings, connection),
    }

    app.register_blueprint(webhooks_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(console_bp)
    app.register_blueprint(openapi_bp)
    app.register_blueprint(rekognition_bp)  # POST /: the Rekognition-compatible endpoint

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        response = jsonify(error=exc.name, message=exc.description)
        response.status_code = exc.code or 500
        # Werkzeug's own headers (Allow on a 405...), but not its text/html Content-Type.
        response.headers.extend((k, v) for k, v in exc.get_headers() if k.lower() != "content-type")
        return response

    for kind, part in UNAVAILABLE.items():
        app.register_error_handler(kind, functools.partial(unavailable, app, part))

    return app
