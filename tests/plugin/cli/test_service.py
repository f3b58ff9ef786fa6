"""``customlabels project status`` and ``project resync [--wait]`` against a small local HTTP server that
answers as the sync service's REST API does (no Label Studio, Redis or S3)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, jsonify, request
from werkzeug.serving import WSGIRequestHandler, make_server

from plugin.cli import service as service_module
from plugin.cli.service import DEFAULT_SERVICE_URL, service_url
from tests.plugin.cli.helpers import run


@dataclass
class FakeService:
    """The status of project 3 and what happens after a resync: the worker publishes after
    ``publish_after`` status requests (never when None), or fails with ``fail``."""

    status: dict[str, Any] = field(
        default_factory=lambda: {
            "project": 3,
            "title": "Demo: shapes",
            "slug": "demo-shapes",
            "last_publish": "2024-05-01T10:00:00.000000",
            "last_publish_seconds": 0.42,
            "entries": {"train": 5, "test": 2},
            "labels": {"train": 3, "test": 2},
            "pending_events": 0,
            "task_error_count": 0,
            "last_error": None,
        }
    )
    publish_after: int | None = 2
    fail: str | None = None
    resyncs: int = 0
    polls_since_resync: int = 0
    unavailable_once: bool = False
    published: int = 0
    authorizations: list[str | None] = field(default_factory=list)
    required_token: str | None = None

    def app(self) -> Flask:
        app = Flask(__name__)

        @app.before_request
        def authenticate() -> Any:
            given = request.headers.get("Authorization")
            self.authorizations.append(given)
            if self.required_token and given != f"Bearer {self.required_token}":
                return jsonify(error="Unauthorized", message="send Authorization: Bearer"), 401
            return None

        @app.get("/api/v1/projects/<int:project_id>/status")
        def status(project_id: int) -> Any:
            if project_id != 3:
                message = f"project {project_id} is not a customlabels project"
                return jsonify(error="Not Found", message=message), 404
            if self.resyncs:
                self.polls_since_resync += 1
                if self.unavailable_once:
                    self.unavailable_once = False
                    return jsonify(error="Service Unavailable", message="Redis is unavailable"), 503
                if self.fail and self.polls_since_resync >= 2:
                    self.status.update(last_error=self.fail, last_error_at="2024-05-01T10:00:05.000000")
                elif self.publish_after is not None and self.polls_since_resync == self.publish_after:
                    self.published += 1
                    self.status.update(
                        last_publish=f"2024-05-01T10:01:{self.published:02d}.000000",
                        pending_events=0,
                        entries={"train": 6, "test": 2},
                    )
            return jsonify(self.status)

        @app.post("/api/v1/projects/<int:project_id>/resync")
        def resync(project_id: int) -> Any:
            if project_id != 3:
                return jsonify(
                    error="Not Found", message=f"project {project_id} is not a customlabels project"
                ), 404
            self.resyncs += 1
            self.polls_since_resync = 0
            self.status["pending_events"] = 4
            return jsonify(status="queued", job="job-1"), 202

        return app


class QuietHandler(WSGIRequestHandler):
    """No request log on stderr (the tests read stderr)."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.fixture
def service() -> Iterator[tuple[FakeService, str]]:
    fake = FakeService()
    server = make_server("127.0.0.1", 0, fake.app(), threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def fast_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "POLL_SECONDS", 0.02)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_status_json_is_the_services_document(
    service: tuple[FakeService, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = service
    code, out, err = run(capsys, "project", "status", "3", "--service-url", url, "--json")
    assert code == 0 and err == ""
    assert json.loads(out) == fake.status


def test_status_reads_well(service: tuple[FakeService, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, url = service
    code, out, _ = run(capsys, "project", "status", "3", "--service-url", url)
    assert code == 0
    assert out.splitlines() == [
        "project 3 'Demo: shapes' (folder demo-shapes)",
        "  last publish    2024-05-01T10:00:00.000000 (took 0.42 s)",
        "  entries         train 5, test 2",
        "  labels          train 3, test 2",
        "  pending events  0",
        "  task errors     0",
        "  last error      none",
    ]


def test_an_unknown_project_is_one_line_naming_the_url(
    service: tuple[FakeService, str], capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = service
    code, out, err = run(capsys, "project", "status", "9", "--service-url", url)
    assert code == 1 and out == ""
    assert err == f"error: project 9 is not a customlabels project ({url}/api/v1/projects/9/status)\n"
    code, out, err = run(capsys, "project", "resync", "9", "--service-url", url, "--json")
    assert code == 1
    assert json.loads(out)["status"] == "error" and "project 9 is not a customlabels project" in err


def test_an_unreachable_service_is_one_line_naming_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    code, out, err = run(capsys, "project", "status", "3", "--service-url", url)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: the sync service at {url} does not answer (ConnectError")
    code, out, err = run(capsys, "project", "resync", "3", "--wait", "--service-url", url, "--json")
    assert code == 1
    assert json.loads(out) == {"status": "error", "error": err.removeprefix("error: ").rstrip("\n")}


def test_a_bad_service_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "project", "status", "3", "--service-url", "ftp://host")
    assert code == 2
    assert err == "error: configuration: --service-url: must be an http or https URL, got 'ftp://host'\n"


def test_the_service_url_comes_from_the_flag_the_variable_the_local_stack_then_the_default(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = {"CUSTOMLABELS_HOME": str(home)}
    assert service_url(None, env) == DEFAULT_SERVICE_URL == "http://127.0.0.1:5000"
    home.mkdir()
    (home / "state.json").write_text(
        json.dumps({"home": str(home), "urls": {"service": "http://127.0.0.1:5077"}})
    )
    assert service_url(None, env) == "http://127.0.0.1:5077"
    env["CUSTOMLABELS_SERVICE_URL"] = "http://service:5000/"
    assert service_url(None, env) == "http://service:5000"
    assert service_url("https://sync.example.com", env) == "https://sync.example.com"


def test_resync_queues_and_returns(
    service: tuple[FakeService, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = service
    code, out, err = run(capsys, "project", "resync", "3", "--service-url", url, "--json")
    assert code == 0 and err == ""
    assert json.loads(out) == {"project": 3, "service_url": url, "job": "job-1", "status": "queued"}
    assert fake.resyncs == 1
    code, out, _ = run(capsys, "project", "resync", "3", "--service-url", url)
    assert code == 0
    assert out.startswith("resync of project 3 queued (job job-1)")


def test_resync_wait_until_published(
    service: tuple[FakeService, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = service
    fake.publish_after = 5
    code, out, err = run(capsys, "project", "resync", "3", "--wait", "--service-url", url, "--json")
    assert code == 0
    doc = json.loads(out)  # standard output is the JSON alone
    assert doc["status"] == "published"
    assert doc["last_publish"] == "2024-05-01T10:01:01.000000"
    assert doc["entries"] == {"train": 6, "test": 2} and doc["job"] == "job-1"
    assert fake.polls_since_resync == 5
    lines = err.splitlines()
    assert lines[0] == "customlabels: waiting for a worker to publish (4 pending events)"
    assert lines[-1].startswith("customlabels: waiting for a worker to publish: done in ")
    code, out, err = run(capsys, "project", "resync", "3", "--wait", "--service-url", url, "--quiet")
    assert code == 0 and err == ""
    assert out == "project 3 published at 2024-05-01T10:01:02.000000: train 6 entries, test 2 entries\n"


def test_resync_wait_fails_on_a_new_last_error(
    service: tuple[FakeService, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = service
    fake.publish_after, fake.fail = None, "LabelStudioError: Label Studio is away"
    code, out, err = run(capsys, "project", "resync", "3", "--wait", "--service-url", url, "--json")
    assert code == 1
    doc = json.loads(out)
    assert (doc["status"], doc["last_error"]) == ("failed", "LabelStudioError: Label Studio is away")
    assert (
        err.splitlines()[-1]
        == "error: the resync of project 3 failed: LabelStudioError: Label Studio is away"
    )


def test_resync_wait_times_out(service: tuple[FakeService, str], capsys: pytest.CaptureFixture[str]) -> None:
    fake, url = service
    fake.publish_after = None  # no worker
    code, out, err = run(capsys, "project", "resync", "3", "--wait", "--timeout", "0.3", "--service-url", url)
    assert code == 1 and out == ""
    assert err.splitlines()[-1] == (
        "error: project 3 was not published within 0.3 s (4 pending events); is a worker running? "
        "(`customlabels doctor` checks)"
    )
    assert fake.polls_since_resync >= 3  # it kept asking until the deadline


def test_resync_wait_rides_out_a_503(
    service: tuple[FakeService, str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake, url = service
    fake.unavailable_once, fake.publish_after = True, 3
    code, out, err = run(capsys, "project", "resync", "3", "--wait", "--service-url", url, "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "published"


def test_resync_timeout_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "project", "resync", "3", "--wait", "--timeout", "0")
    assert code == 2 and "--timeout" in err


def test_the_commands_send_the_service_key_else_the_label_studio_token(
    service: tuple[FakeService, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    fake, url = service
    monkeypatch.setenv("CUSTOMLABELS_HOME", str(tmp_path))  # no local stack's token here
    monkeypatch.delenv("CUSTOMLABELS_SERVICE_API_KEY", raising=False)
    monkeypatch.setenv("CUSTOMLABELS_LS_API_KEY", "ls-token-of-the-person")
    assert run(capsys, "project", "status", "3", "--service-url", url)[0] == 0
    monkeypatch.setenv("CUSTOMLABELS_SERVICE_API_KEY", "the-service-key")
    assert run(capsys, "project", "resync", "3", "--service-url", url)[0] == 0
    assert fake.authorizations[0] == "Bearer ls-token-of-the-person"
    assert set(fake.authorizations[1:]) == {"Bearer the-service-key"}


def test_a_refused_token_says_which_settings_to_set(
    service: tuple[FakeService, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:  # fmt: skip
    fake, url = service
    fake.required_token = "right"
    monkeypatch.setenv("CUSTOMLABELS_HOME", str(tmp_path))
    monkeypatch.setenv("CUSTOMLABELS_SERVICE_API_KEY", "wrong")
    code, out, err = run(capsys, "project", "status", "3", "--service-url", url)
    assert code == 1 and out == ""
    assert "answered 401" in err and "CUSTOMLABELS_SERVICE_API_KEY or CUSTOMLABELS_LS_API_KEY" in err
    assert "wrong" not in err
