"""``customlabels serve``: the Flask app under gunicorn (a production WSGI server)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from sync_service.config import Settings
from sync_service.web.app import create_app


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def serve(
    settings: Settings, *, host: str = "127.0.0.1", port: int = 5000, workers: int = 2, threads: int = 4
) -> None:
    """Serve the app until stopped; ``workers`` processes of ``threads`` threads each."""
    app = create_app(settings)
    _Gunicorn(
        app,
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "warning",
            "timeout": 60,
            "graceful_timeout": 5,
        },
    ).run()
