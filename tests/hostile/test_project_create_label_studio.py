"""``customlabels project create`` when Label Studio refuses the API key (401, 403) or does not answer:
one error line naming Label Studio's URL and the setting to fix, exit code 1, no traceback, no key.

Label Studio is played by a tiny loopback server answering every request with one status; "away" is a
loopback port nothing listens on.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from plugin.cli import main
from plugin.localstack.processes import free_port
from sync_service.config import load_settings
from sync_service.domain.bootstrap import label_studio_errors
from sync_service.errors import LabelStudioError

API_KEY = f"lskey-{secrets.token_hex(12)}"


@pytest.fixture
def refusing() -> Iterator[tuple[ThreadingHTTPServer, list[int]]]:
    """A server answering every request with the status at ``status[0]`` and a Django-REST-style body."""
    status = [401]

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = json.dumps({"detail": "Invalid token."}).encode()
            self.send_response(status[0])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PATCH = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, status
    server.shutdown()
    server.server_close()


def _run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ls_url: str, *extra: str
) -> tuple[int, str, str]:
    """``customlabels project create`` against ``ls_url``: exit code, standard output and error."""
    away = f"127.0.0.1:{free_port()}"  # Redis and S3: never reached, Label Studio is first
    for name, value in {
        "CUSTOMLABELS_LS_URL": ls_url,
        "CUSTOMLABELS_LS_API_KEY": API_KEY,
        "CUSTOMLABELS_BUCKET": "bucket",
        "CUSTOMLABELS_WEBHOOK_SECRET": "a-webhook-secret-of-some-length",
        "CUSTOMLABELS_REDIS_URL": f"redis://{away}/0",
        "CUSTOMLABELS_S3_ENDPOINT": f"http://{away}",
    }.items():
        monkeypatch.setenv(name, value)
    code = main(["project", "create", "--title", "Refused project", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_error_line(code: int, out: str, err: str, *, starts: str, setting: str) -> None:
    """Exit code 1 and one line on standard error, starting with ``starts`` and naming ``setting``;
    no traceback and no API key anywhere."""
    assert code == 1
    assert err.count("\n") == 1, err
    assert err.startswith(starts), err
    assert setting in err
    assert "Traceback" not in err + out
    assert API_KEY not in err + out


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_api_key_is_one_line_naming_the_url_and_the_setting(
    refusing: tuple[ThreadingHTTPServer, list[int]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    status: int,
) -> None:
    server, answer = refusing
    answer[0] = status
    url = f"http://127.0.0.1:{server.server_address[1]}"
    _assert_one_error_line(
        *_run(monkeypatch, capsys, url),
        starts=f"error: Label Studio at {url} refused the API key (HTTP {status}: Invalid token.)",
        setting="CUSTOMLABELS_LS_API_KEY",
    )


def test_label_studio_away_is_one_line_naming_the_url_and_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    _assert_one_error_line(
        *_run(monkeypatch, capsys, url),
        starts=f"error: Label Studio at {url} does not answer (ConnectError)",
        setting="CUSTOMLABELS_LS_URL",
    )


def test_with_json_the_error_is_a_json_document_too(
    refusing: tuple[ThreadingHTTPServer, list[int]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server, _ = refusing
    url = f"http://127.0.0.1:{server.server_address[1]}"
    code, out, _err = _run(monkeypatch, capsys, url, "--json")
    assert code == 1
    document = json.loads(out)
    assert document["status"] == "error"
    assert "CUSTOMLABELS_LS_API_KEY" in document["error"]


def test_a_later_403_quotes_label_studio_instead_of_blaming_the_key() -> None:
    """After the first call succeeded the key is good: a 403 then is Label Studio refusing something
    else (a private S3 or webhook URL), and its own reason is the message."""
    settings = load_settings(
        {
            "CUSTOMLABELS_LS_API_KEY": API_KEY,
            "CUSTOMLABELS_BUCKET": "bucket",
            "CUSTOMLABELS_WEBHOOK_SECRET": "a-webhook-secret-of-some-length",
        }
    )
    reason = {"detail": "URL resolves to a reserved network address (block: 127.0.0.0/8)"}
    with pytest.raises(LabelStudioError) as raised, label_studio_errors(settings):
        raise LabelStudioError(
            "Label Studio POST /api/webhooks/ answered 403", status=403, detail=reason["detail"]
        )
    assert str(raised.value) == f"Label Studio at {settings.ls_url} answered HTTP 403: {reason['detail']}"
