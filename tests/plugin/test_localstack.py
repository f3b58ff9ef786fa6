"""``customlabels up`` / ``down`` / ``doctor``: the pieces, then the whole stack end to end.

The end-to-end test runs the real thing as a user would (``customlabels up --detach`` in a temporary
home, on free ports, with its own Redis), checks the demo project in Label Studio and its manifests in
the store, ``doctor``, ``down``, a second ``up`` that finds every piece of data again, and that no
process it started is left.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from PIL import Image, ImageOps

from plugin import localstack as L
from plugin import services
from plugin.cli import main
from plugin.progress import Progress
from sync_service.config import load_settings
from tests import realparts

DEMO = Path(L.__file__).parent / "samples" / "demo"


# --- plan, secrets, settings ---------------------------------------------------------------------------


def test_plan_defaults_env_and_flags(tmp_path: Path) -> None:
    plan = L.make_plan(tmp_path, env={})
    assert (plan.ls_port, plan.service_port, plan.s3_port) == (8080, 5000, 9000)
    assert plan.ls_url == "http://127.0.0.1:8080" and plan.service_url == "http://127.0.0.1:5000"
    assert plan.embedded_s3 and plan.s3_endpoint == "http://127.0.0.1:9000"
    assert plan.redis_url == "redis://127.0.0.1:6379/0" and plan.bucket == "customlabels"
    env = {"CUSTOMLABELS_LS_PORT": "18080", "CUSTOMLABELS_PORT": "15000", "CUSTOMLABELS_S3_PORT": "19000"}
    plan = L.make_plan(tmp_path, ls_port=28080, env=env)
    assert (plan.ls_port, plan.service_port, plan.s3_port) == (28080, 15000, 19000)
    with pytest.raises(L.StackError, match="three different ports"):
        L.make_plan(tmp_path, ls_port=5000, env={})
    with pytest.raises(L.StackError, match="CUSTOMLABELS_S3_PORT"):
        L.make_plan(tmp_path, env={"CUSTOMLABELS_S3_PORT": "nine"})
    external = L.make_plan(tmp_path, env={"CUSTOMLABELS_S3_ENDPOINT": "http://minio:9000/"})
    assert not external.embedded_s3 and external.s3_endpoint == "http://minio:9000"
    assert L.make_plan(tmp_path, s3_port=5000, env={"CUSTOMLABELS_S3_ENDPOINT": "http://m:1"}).s3_port == 5000
    assert L.make_plan(tmp_path, env={}).ls_workers == 2
    assert L.make_plan(tmp_path, env={"CUSTOMLABELS_LS_WORKERS": "0"}).ls_workers == 0
    with pytest.raises(L.StackError, match="CUSTOMLABELS_LS_WORKERS"):
        L.make_plan(tmp_path, env={"CUSTOMLABELS_LS_WORKERS": "many"})
    with pytest.raises(L.StackError, match="CUSTOMLABELS_LS_WORKERS"):
        L.make_plan(tmp_path, env={"CUSTOMLABELS_LS_WORKERS": "-1"})


def test_home_is_flag_then_variable_then_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert L.resolve_home(None, {}) == tmp_path / ".customlabels"
    assert L.resolve_home(None, {"CUSTOMLABELS_HOME": str(tmp_path / "h")}) == tmp_path / "h"
    assert L.resolve_home(str(tmp_path / "x"), {"CUSTOMLABELS_HOME": "y"}) == tmp_path / "x"


def test_secrets_are_made_once_and_private(tmp_path: Path) -> None:
    layout = L.Layout(tmp_path)
    assert L.load_secrets(layout, create=False) is None
    made = L.load_secrets(layout, create=True)
    assert made is not None
    assert layout.secrets.stat().st_mode & 0o777 == 0o600
    assert 6 <= len(made.token) <= 40 and len(made.webhook_secret) >= 16 and len(made.password) >= 12
    assert L.load_secrets(layout, create=True) == made
    assert made.password not in repr(made) and made.token not in repr(made)


def test_label_studio_env_file(tmp_path: Path) -> None:
    layout = L.Layout(tmp_path)
    assert L.load_ls_env(layout, create=False) is None
    settings = L.load_ls_env(layout, create=True)
    assert settings == L.LS_ENV_DEFAULTS
    assert layout.ls_env.stat().st_mode & 0o777 == 0o600
    assert L.ssrf_allows_loopback(settings)
    parsed = L.parse_env_file("# c\n\nexport A=1\nB = 'two words'\nC=\"x\"\nnot a setting\nD=\n")
    assert parsed == {"A": "1", "B": "two words", "C": "x", "D": ""}
    assert not L.ssrf_allows_loopback({})
    assert not L.ssrf_allows_loopback({"SSRF_PROTECTION_ENABLED": "true", "USE_DEFAULT_BANNED_SUBNETS": "1"})
    assert L.ssrf_allows_loopback({"SSRF_PROTECTION_ENABLED": "true", "USE_DEFAULT_BANNED_SUBNETS": "False"})


def test_service_env_names_every_part_and_keeps_no_foreign_aws_credentials(tmp_path: Path) -> None:
    plan = L.make_plan(tmp_path, ls_port=18080, service_port=15000, s3_port=19000, env={})
    secrets_ = L.Secrets("a@b.c", "pw", "t" * 40, "w" * 32)
    base = {
        "PATH": "/bin",
        "AWS_PROFILE": "prod",
        "AWS_SECRET_ACCESS_KEY": "real",
        "CUSTOMLABELS_DEBOUNCE_SECONDS": "0.5",
        "CUSTOMLABELS_LS_URL": "http://elsewhere:1",
        "CUSTOMLABELS_HOME": "/x",
    }
    env = L.service_env(plan, secrets_, base)
    assert "AWS_PROFILE" not in env and env["AWS_SECRET_ACCESS_KEY"] == "S3RVER"
    assert "CUSTOMLABELS_HOME" not in env
    settings = load_settings(env)
    assert settings.ls_url == "http://127.0.0.1:18080" and settings.ls_api_key == "t" * 40
    assert (
        settings.service_url == "http://127.0.0.1:15000" and settings.s3_endpoint == "http://127.0.0.1:19000"
    )
    assert settings.webhook_secret == "w" * 32 and settings.debounce_seconds == 0.5
    external = L.make_plan(tmp_path, env={"CUSTOMLABELS_S3_ENDPOINT": "http://minio:9000"})
    assert L.service_env(external, secrets_, base)["AWS_PROFILE"] == "prod"


def test_a_taken_port_is_named_with_the_flag_that_moves_it(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        plan = L.make_plan(tmp_path, ls_port=port, service_port=services.free_port(), env={})
        (problem,) = [p for p in L.taken_ports(plan) if str(port) in p]
        assert "--ls-port" in problem and "CUSTOMLABELS_LS_PORT" in problem


def test_up_refuses_a_taken_port_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        code = main(["up", "--home", str(home), "--json", "--port", str(port), "--ls-port",
                     str(services.free_port()), "--s3-port", str(services.free_port())])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 1
    assert json.loads(out)["status"] == "error" and f"port {port}" in err and "--port N" in err
    assert not (home / "state.json").exists() and not (home / "secrets.json").exists()


# --- processes and state ---------------------------------------------------------------------------------


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(5)


def test_a_recorded_process_is_stopped_with_its_group(
    sleeper: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    proc = L.Proc.of("worker", sleeper, tmp_path / "log", ["sleep", "60"])
    assert proc.alive and proc.start is not None
    again = L.Proc.from_json("worker", json.loads(json.dumps(proc.to_json())))
    assert again.alive
    assert again.stop(grace=5)
    sleeper.wait(5)
    assert not proc.alive and not again.stop()


def test_a_pid_that_is_no_longer_ours_is_never_signalled(sleeper: subprocess.Popen[bytes]) -> None:
    start = L.process_start_time(sleeper.pid)
    assert start is not None
    stranger = L.Proc("redis", sleeper.pid, start + 1, "", [])  # same pid, another process
    assert not stranger.alive
    assert not stranger.stop(grace=1)
    time.sleep(0.2)
    assert sleeper.poll() is None


def test_down_stops_only_what_the_state_file_names(
    sleeper: subprocess.Popen[bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)  # e.g. a Redis we found running
    try:
        layout = L.Layout(tmp_path)
        state = L.State(
            home=str(tmp_path), processes={"worker": L.Proc.of("worker", sleeper, tmp_path / "w", [])}
        )
        L.write_state(layout, state)
        assert layout.state.stat().st_mode & 0o777 == 0o600
        assert main(["down", "--home", str(tmp_path), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["stopped"] == ["worker"]
        assert sleeper.wait(5) is not None and other.poll() is None
        assert not layout.state.exists()
        assert main(["down", "--home", str(tmp_path), "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == {
            "status": "nothing is running from this home", "stopped": [], "home": str(tmp_path)
        }  # fmt: skip
    finally:
        other.kill()
        other.wait(5)


def test_doctor_on_an_empty_home_fails_with_fixes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--home", str(tmp_path / "none"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["checks"][0]["fix"]
    assert main(["doctor", "--home", str(tmp_path / "none")]) == 1
    assert "fix: run `customlabels up`" in capsys.readouterr().out


@pytest.fixture
def own_redis_db(redis_db: realparts.RedisDb) -> Iterator[str]:
    """An empty database of its own (claim_redis drops every ``cl:`` key of the database it takes)."""
    claimed = realparts.claim_redis_db(redis_db.url)
    yield claimed.url
    realparts.release_redis_db(claimed)


def test_a_redis_database_serves_one_home_at_a_time(
    own_redis_db: str, tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    redis_url = own_redis_db
    client = redis.Redis.from_url(redis_url)
    a = L.Plan(layout=L.Layout(tmp_path / "a"), redis_url=redis_url)
    b = L.Plan(layout=L.Layout(tmp_path / "b"), redis_url=redis_url)
    try:
        client.set("cl:projects", "from a stack without a marker")
        client.set("cl:p:1:x", "1")
        client.set("elsewhere", "kept")
        assert L.claim_redis(a) == 2
        assert L.redis_owner(redis_url) is not None and L.redis_owner(redis_url)["home"] == str(a.layout.home)
        assert client.get("elsewhere") == b"kept"
        client.set("cl:projects", "a's cache")
        assert L.claim_redis(a) == 0 and client.get("cl:projects") == b"a's cache"
        assert L.claim_redis(b) == 1  # a is not running: its caches go
        # b is running now: a may not take the database
        L.write_state(b.layout, L.State(home=str(b.layout.home),
                                        processes={"worker": L.Proc.of("worker", sleeper, tmp_path / "w", [])}))  # fmt: skip
        with pytest.raises(L.StackError, match="in use by the customlabels stack"):
            L.claim_redis(a)
    finally:
        client.delete("cl:projects", "cl:p:1:x", "elsewhere", L.REDIS_OWNER_KEY)
        client.close()


# --- the demo ----------------------------------------------------------------------------------------------


def test_demo_images_are_small_files_and_one_is_a_portrait_phone_photo() -> None:
    definition = L.demo_definition()
    sides = {image["dataset"] for image in definition["images"]}
    assert sides == {"train", "test"}
    for image in definition["images"]:
        raw = (DEMO / image["file"]).read_bytes()
        assert len(raw) < 10_000
        shown = ImageOps.exif_transpose(Image.open(io.BytesIO(raw)))
        assert list(shown.size) == image["size"]
    portrait = Image.open(DEMO / "phone-portrait.jpg")
    assert portrait.size == (320, 240) and portrait.getexif().get(0x0112) == 6


def test_demo_tasks_carry_the_dataset_and_boxes_in_percent_of_the_displayed_image() -> None:
    image = {"file": "p.jpg", "dataset": "train", "label": "night", "size": [240, 320],
             "boxes": [["circle", 60, 40, 120, 120]]}  # fmt: skip
    task = L.demo_task(image, "s3://b/p.jpg")
    assert task["data"] == {"image": "s3://b/p.jpg", "dataset": "train"}
    choice, box = task["annotations"][0]["result"]
    assert choice["value"] == {"choices": ["night"]} and choice["from_name"] == "label"
    assert (box["original_width"], box["original_height"]) == (240, 320)
    assert box["value"]["x"] == 25.0 and box["value"]["y"] == 12.5 and box["value"]["width"] == 50.0
    assert "annotations" not in L.demo_task({**image, "label": None, "boxes": []}, "s3://b/p.jpg")


# --- progress ----------------------------------------------------------------------------------------------


def test_progress_prints_plain_lines_off_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(3, stream=out)
    progress.step("one")
    progress.note("a note")
    progress.step("two")
    progress.finish("ready")
    assert out.getvalue() == (
        "customlabels: [1/3] one\ncustomlabels: a note\ncustomlabels: [2/3] two\ncustomlabels: ready\n"
    )


def test_progress_draws_a_bar_on_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(4, stream=out, tty=True)
    progress.step("starting")
    progress.step("waiting")
    assert progress.render(now=progress.step_started + 3).startswith(
        "[#####---------------] 2/4  waiting  3 s"
    )
    with progress.paused():
        progress.note("from pip")
    progress.finish()
    text = out.getvalue()
    assert "\r\x1b[2K[" in text and "customlabels: from pip\n" in text and text.endswith("s\n")
    assert Progress(2, stream=io.StringIO(), enabled=False).tty is False


# --- end to end --------------------------------------------------------------------------------------------

E2E_SECONDS = 240


def _cli(env: dict[str, str], *args: str, timeout: float = 360) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plugin.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _get_object(s3: Any, bucket: str, key: str) -> bytes | None:
    try:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def _manifests(s3: Any, bucket: str, folder: str, *, timeout: float = 60) -> dict[str, list[str]]:
    """The source-refs of train.manifest and test.manifest once both hold every demo image."""
    deadline = time.monotonic() + timeout
    while True:
        refs: dict[str, list[str]] = {}
        for side in ("train", "test"):
            body = _get_object(s3, bucket, f"{folder}{side}.manifest") or b""
            refs[side] = sorted(json.loads(line)["source-ref"] for line in body.splitlines())
        if (len(refs["train"]), len(refs["test"])) == (5, 2) or time.monotonic() > deadline:
            return refs
        time.sleep(0.5)


def _tasks(ls_url: str, token: str, project: int) -> list[tuple[int, str, str]]:
    status, body = services.http_get(
        f"{ls_url}/api/projects/{project}/export?exportType=JSON&download_all_tasks=true",
        token=token,
        timeout=30,
    )
    assert status == 200, body[:300]
    return sorted((t["id"], t["data"]["image"], t["data"]["dataset"]) for t in json.loads(body))


@pytest.mark.e2e
def test_up_doctor_down_up_keeps_every_piece_of_data(tmp_path: Path) -> None:
    services.ensure_label_studio_env()  # installed once per machine; not part of the timing
    began = time.monotonic()
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CUSTOMLABELS_", "AWS_", "LABEL_STUDIO"))}
    env.update(
        CUSTOMLABELS_HOME=str(home),
        CUSTOMLABELS_REDIS_URL=f"redis://127.0.0.1:{services.free_port()}/0",  # nothing there: up starts one
        CUSTOMLABELS_DEBOUNCE_SECONDS="0.2",
    )
    ports = ["--ls-port", str(services.free_port()), "--port", str(services.free_port()),
             "--s3-port", str(services.free_port())]  # fmt: skip
    started: list[int] = []
    try:
        up = _cli(env, "up", "--detach", "--json", *ports)
        assert up.returncode == 0, up.stderr
        info = json.loads(up.stdout)
        started += info["pids"].values()
        assert set(info["pids"]) == {"s3", "redis", "label_studio", "service", "worker"}
        assert info["redis"]["started"] and info["s3"]["embedded"]
        assert (home / "secrets.json").stat().st_mode & 0o777 == 0o600
        ls_command = json.loads((home / "state.json").read_text())["processes"]["label_studio"]["command"]
        assert ls_command[0].endswith("/gunicorn") and "--workers=2" in ls_command  # the default
        assert len(psutil.Process(info["pids"]["label_studio"]).children()) == 2
        ls, token, demo = info["label_studio"]["url"], info["label_studio"]["token"], info["demo"]
        tasks = _tasks(ls, token, demo["project"])
        assert [d for _, _, d in tasks].count("train") == 5 and [d for _, _, d in tasks].count("test") == 2

        s3 = L.s3_client(L.make_plan(home, s3_port=int(ports[5]), env={}))
        bucket, folder = info["s3"]["bucket"], demo["s3"].split("/", 3)[3]
        manifests = _manifests(s3, bucket, folder)
        assert (len(manifests["train"]), len(manifests["test"])) == (5, 2), manifests
        assert {r for side in manifests.values() for r in side} == {image for _, image, _ in tasks}
        summary = _get_object(s3, bucket, f"{folder}validation/manifest_summary.json")
        assert summary is not None and json.loads(summary)["statistics"]["testing"]["total_json_lines"] == 2

        doctor = _cli(env, "doctor", "--json", timeout=120)
        report = json.loads(doctor.stdout)
        assert doctor.returncode == 0 and report["ok"], [c for c in report["checks"] if c["status"] != "ok"]

        down = _cli(env, "down", "--json", timeout=120)
        assert down.returncode == 0, down.stderr
        assert sorted(json.loads(down.stdout)["stopped"]) == sorted(info["pids"])
        assert not any(_running(pid) for pid in started)
        assert not (home / "state.json").exists()

        again = _cli(env, "up", "--detach", "--json", *ports)
        assert again.returncode == 0, again.stderr
        info2 = json.loads(again.stdout)
        started += info2["pids"].values()
        assert info2["status"] == "started" and info2["demo"]["project"] == demo["project"]
        assert info2["label_studio"]["token"] == token
        assert _tasks(ls, token, demo["project"]) == tasks  # same tasks, same ids: nothing made twice
        assert _manifests(s3, bucket, folder) == manifests
        assert _cli(env, "up", "--detach", "--json", *ports).stdout.count('"already running"') == 1

        assert _cli(env, "down", timeout=120).returncode == 0
        assert not any(_running(pid) for pid in started)
        for port in ports[1::2]:
            assert not services.port_in_use(int(port))
    finally:
        _cli(env, "down", timeout=120)
        for pid in started:  # nothing may outlive the test, whatever failed
            if _running(pid):
                os.killpg(pid, signal.SIGKILL)
    assert time.monotonic() - began < E2E_SECONDS


def _running(pid: int) -> bool:
    return L.process_start_time(pid) is not None
