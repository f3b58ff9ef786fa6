"""Secrets never reach logs or error messages: the webhook secret, the Label Studio API key, the AWS
credentials, the Rekognition-compatible endpoint's secret key, a password in a Redis URL, the project
token every Label Studio webhook carries, the service API key, bearer tokens, a person's password and
the console's and Label Studio's session ids.

The last test runs the real stack (``serve`` + ``worker`` against the session's Label Studio, Redis and
moto S3) with distinctive secrets, provokes errors (bad requests of every kind, Label Studio away, a wrong
Label Studio key, S3 away, a bad setting), then greps every log the test produced for them. Label Studio's
own log is searched too; only its own token is allowed there.
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from plugin.localstack.processes import free_port
from sync_service.config import SECRET_HEADER, load_settings
from sync_service.errors import ConfigError
from sync_service.web.auth import SESSION_KEY
from tests.e2e.stack import CUSTOMLABELS, Stack, stack_env
from tests.realparts import LabelStudioServer
from tests.signin import bearer, console_session, form_token

BASE_ENV = {
    "CUSTOMLABELS_LS_API_KEY": "token",
    "CUSTOMLABELS_BUCKET": "bucket",
    "CUSTOMLABELS_WEBHOOK_SECRET": "a-webhook-secret-of-some-length",
}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CUSTOMLABELS_REDIS_URL", "http://:{secret}@127.0.0.1:6379/0"),
        ("CUSTOMLABELS_REDIS_URL", "redis//user:{secret}@127.0.0.1:6379/0"),
        ("CUSTOMLABELS_LS_URL", "ftp://admin:{secret}@label-studio:8080"),
        ("CUSTOMLABELS_S3_ENDPOINT", "s3://key:{secret}@minio:9000"),
        ("CUSTOMLABELS_SERVICE_URL", "{secret}"),
        ("CUSTOMLABELS_REDIS_URL", "redis://:{secret}@[::1"),
    ],
)
def test_a_bad_url_setting_is_named_without_its_password(variable: str, value: str) -> None:
    """Found by these tests: the message quoted the whole URL, password included."""
    secret = f"pw-{secrets.token_hex(8)}"
    with pytest.raises(ConfigError) as raised:
        load_settings({**BASE_ENV, variable: value.format(secret=secret)})
    assert raised.value.variable == variable
    assert secret not in str(raised.value)


def test_the_settings_repr_holds_no_secret() -> None:
    values = {
        "CUSTOMLABELS_LS_API_KEY": f"lskey-{secrets.token_hex(8)}",
        "CUSTOMLABELS_WEBHOOK_SECRET": f"whsec-{secrets.token_hex(8)}",
        "CUSTOMLABELS_REDIS_URL": f"redis://:rpw-{secrets.token_hex(8)}@127.0.0.1:6379/0",
        "CUSTOMLABELS_API_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "CUSTOMLABELS_API_SECRET_ACCESS_KEY": f"apisec-{secrets.token_hex(8)}",
        "CUSTOMLABELS_SERVICE_API_KEY": f"svckey-{secrets.token_hex(16)}",
    }
    settings = load_settings({**BASE_ENV, **values})
    shown = repr(settings) + str(settings)
    for name in (
        "CUSTOMLABELS_LS_API_KEY",
        "CUSTOMLABELS_WEBHOOK_SECRET",
        "CUSTOMLABELS_API_SECRET_ACCESS_KEY",
        "CUSTOMLABELS_SERVICE_API_KEY",
    ):
        assert values[name] not in shown
    assert values["CUSTOMLABELS_REDIS_URL"].split(":")[2].split("@")[0] not in shown


# ----------------------------------------------------------------------------------------- the real stack


def _distinct(tag: str) -> str:
    return f"{tag}{secrets.token_hex(12)}"


@pytest.mark.e2e
def test_no_secret_in_any_log(
    label_studio: LabelStudioServer, redis_url: str, s3: Any, bucket: str, tmp_path: Path
) -> None:
    secret_values = {
        "webhook secret": _distinct("whsec"),
        "AWS access key id": "AKIA" + secrets.token_hex(8).upper(),
        "AWS secret access key": _distinct("awssec"),
        "API secret access key": _distinct("apisec"),
        "project token (in payloads)": _distinct("ptok"),
        "task data password (in payloads)": _distinct("tdpw"),
        "wrong Label Studio key": _distinct("lswrong"),
        "service API key": _distinct("svckey") + secrets.token_hex(8),  # 32+ characters
        "wrong bearer token": _distinct("badbearer"),
        "wrong password": _distinct("badpw"),
    }
    port = free_port()
    env = stack_env(
        ls_url=label_studio.url,
        ls_token=label_studio.token,
        redis_url=redis_url,
        s3_endpoint=s3.endpoint_url,
        bucket=bucket,
        CUSTOMLABELS_SERVICE_URL=f"http://127.0.0.1:{port}",
        CUSTOMLABELS_QUEUE=f"secrets-{uuid.uuid4().hex[:8]}",
        CUSTOMLABELS_WEBHOOK_SECRET=secret_values["webhook secret"],
        CUSTOMLABELS_API_ACCESS_KEY_ID="AKIDSECRETSTEST",
        CUSTOMLABELS_API_SECRET_ACCESS_KEY=secret_values["API secret access key"],
        AWS_ACCESS_KEY_ID=secret_values["AWS access key id"],
        AWS_SECRET_ACCESS_KEY=secret_values["AWS secret access key"],
        CUSTOMLABELS_SERVICE_API_KEY=secret_values["service API key"],
    )
    stack = Stack(env=env, workdir=tmp_path, port=port)
    project_id = 0
    try:
        stack.start_serve()
        stack.start_worker()
        made = _cli(
            tmp_path,
            env,
            "project-create",
            "project",
            "create",
            "--title",
            f"Secrets {uuid.uuid4().hex[:6]}",
            "--json",
        )
        project_id = json.loads(made.stdout)["project"]
        client = label_studio.client()
        client.projects.import_tasks(
            id=project_id, request=[{"image": f"s3://{bucket}/missing.jpg", "dataset": "train"}]
        )
        _provoke_the_service(stack.url, project_id, secret_values)
        secret_values.update(_sign_in_and_act(stack.url, project_id, secret_values, label_studio, redis_url))

        # Label Studio away, then a wrong key for it, then S3 away: the worker's jobs fail and log why.
        for name, change in (
            ("ls-away", {"CUSTOMLABELS_LS_URL": f"http://127.0.0.1:{free_port()}"}),
            ("ls-wrong-key", {"CUSTOMLABELS_LS_API_KEY": secret_values["wrong Label Studio key"]}),
            ("s3-away", {"CUSTOMLABELS_S3_ENDPOINT": f"http://127.0.0.1:{free_port()}"}),
        ):
            stack.kill_workers()
            stack.env = {**env, **change}
            stack.start_worker()
            time.sleep(1.0)
            _post(stack.url, project_id, secret_values, action="TASKS_CREATED", tasks=[{"id": 1}])
            httpx.post(
                f"{stack.url}/api/v1/projects/{project_id}/resync",
                timeout=10,
                headers=bearer(secret_values["service API key"]),
            )
            time.sleep(3.0)
            _cli(
                tmp_path,
                stack.env,
                f"cli-{name}",
                "project",
                "create",
                "--title",
                f"Secrets {name}",
                check=False,
            )
        # A bad setting: the command stops at once, naming the variable.
        bad = {**env, "CUSTOMLABELS_REDIS_URL": f"http://:{secret_values['webhook secret']}@127.0.0.1:6379/0"}
        _cli(tmp_path, bad, "bad-setting", "worker", check=False)
    finally:
        stack.stop()
        if project_id:
            label_studio.client().projects.delete(id=project_id)

    logs = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".log")
    assert {p.name for p in logs} >= {"serve.log", "worker.log", "project-create.log", "bad-setting.log"}
    assert "Traceback" in (tmp_path / "worker.log").read_text()  # the errors were provoked
    leaks = [
        f"{what} in {path.name}"
        for path in logs
        for what, value in {
            **secret_values,
            "Label Studio key": label_studio.token,
            "admin password": label_studio.password,
        }.items()
        if value in path.read_text(errors="replace")
    ]
    own = label_studio.process.log_path.read_text(errors="replace")
    leaks += [f"{what} in Label Studio's log" for what, value in secret_values.items() if value in own]
    assert leaks == []


def _cli(
    workdir: Path, env: dict[str, str], log: str, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [CUSTOMLABELS, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    (workdir / f"{log}.log").write_text(f"$ customlabels {' '.join(args)}\n{done.stdout}\n{done.stderr}")
    if check:
        assert done.returncode == 0, done.stderr
    return done


def _post(url: str, project_id: int, values: dict[str, str], *, headers: dict[str, str] | None = None, raw: bytes | None = None, **body: Any) -> httpx.Response:  # fmt: skip
    project = {
        "id": project_id,
        "title": "Secrets",
        "token": values["project token (in payloads)"],
        "task_data_password": values["task data password (in payloads)"],
    }
    content = raw if raw is not None else json.dumps({"project": project, **body}).encode()
    sent = {SECRET_HEADER: values["webhook secret"], "Content-Type": "application/json"}
    return httpx.post(
        f"{url}/webhooks/label-studio", content=content, headers={**sent, **(headers or {})}, timeout=10
    )


def _sign_in_and_act(
    url: str, project_id: int, values: dict[str, str], label_studio: LabelStudioServer, redis_url: str
) -> dict[str, str]:
    """A wrong password, then the admin signs in, acts in the console and signs out; returns the session
    ids that came into being (the console's cookie, its session id inside it, the Label Studio session the
    service keeps), to search the logs for."""
    with httpx.Client(base_url=url, timeout=30) as browser:
        page = browser.get("/console/sign-in")
        refused = browser.post(
            "/console/sign-in",
            data={"email": label_studio.username, "password": values["wrong password"], "token": form_token(page.text)},
        )  # fmt: skip
        assert refused.status_code == 302 and "sign-in" in refused.headers["location"]
    browser = console_session(url, label_studio.username, label_studio.password)
    try:
        cookie = browser.cookies["customlabels_session"]
        page = browser.get(f"/console/projects/{project_id}")
        assert page.status_code == 200, page.text[:300]
        acted = browser.post(
            f"/console/projects/{project_id}/actions/resync", data={"token": form_token(page.text)}
        )
        assert acted.status_code == 302
        held = Redis.from_url(redis_url)
        try:
            kept = [json.loads(held.get(key) or b"{}") for key in held.scan_iter("cl:auth:session:*")]
        finally:
            held.close()
        assert kept and all(record.get("ls_session") for record in kept)
        browser.post("/console/sign-out", data={"token": form_token(browser.get("/console/").text)})
    finally:
        browser.close()
    found = {"console cookie": cookie, "console session id": _session_id(cookie)}
    found.update({f"Label Studio session {n}": str(r["ls_session"]) for n, r in enumerate(kept)})
    return found


def _session_id(cookie: str) -> str:
    """The session id inside Flask's signed cookie (its payload is base64 JSON, not encrypted)."""
    payload = cookie.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    if cookie.startswith("."):
        raw = zlib.decompress(raw)
    return str(json.loads(raw)[SESSION_KEY])


def _provoke_the_service(url: str, project_id: int, values: dict[str, str]) -> None:
    """Bad requests of every kind; no answer may quote a secret either."""
    token = values["project token (in payloads)"]
    answers = [
        _post(
            url,
            project_id,
            values,
            headers={SECRET_HEADER: values["webhook secret"][:-1]},
            action="TASKS_CREATED",
        ),
        _post(url, project_id, values, headers={SECRET_HEADER: ""}, action="TASKS_CREATED"),
        _post(url, project_id, values, raw=b'{"project": {"token": "' + token.encode() + b'"'),
        _post(url, project_id, values, action="TASKS_CREATED", tasks=[{"id": token}]),
        _post(url, project_id, values, action=token, tasks=[{"id": 1}]),
        _post(url, project_id, values, action="ANNOTATION_CREATED", task={"id": -1, "token": token}),
        _post(url, project_id, values, raw=b" " * (11 * 1024 * 1024)),
        _post(url, project_id, values, action="TASKS_CREATED", tasks=[{"id": 1}]),
        httpx.post(
            f"{url}/api/v1/projects/999999/resync", timeout=10, headers=bearer(values["service API key"])
        ),
        httpx.get(
            f"{url}/api/v1/projects/{project_id}/status",
            timeout=10,
            headers=bearer(values["service API key"]),
        ),
        httpx.get(
            f"{url}/api/v1/projects/{project_id}/status",
            timeout=10,
            headers=bearer(values["wrong bearer token"]),
        ),
        httpx.get(f"{url}/api/v1/projects/{project_id}/status", timeout=10),
        httpx.get(f"{url}/nowhere?token={token}", timeout=10),
        httpx.get(f"{url}/readyz", timeout=10),
    ]
    assert [a.status_code for a in answers[:8]] == [401, 401, 400, 400, 202, 400, 413, 202]
    for answer in answers:
        sent = answer.request.content.decode(errors="replace") + str(answer.request.headers)
        for what, value in values.items():
            if value not in sent:  # what the caller sent it may see again; nothing else
                assert value not in answer.text, f"{what} in the answer to {answer.request.url}"
