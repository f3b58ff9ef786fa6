"""Hostile names: project titles, key prefixes and label names with ``../``, slashes, control characters
and 300 characters are refused (with a message naming what is wrong) or escaped, and nothing is ever
written outside the project's folder under the configured prefix."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis import Redis

from plugin.cli import main
from sync_service.config import Settings, load_settings
from sync_service.domain import bootstrap
from sync_service.domain.projects import MAX_SLUG, ProjectInfo, Projects, slugify
from sync_service.edges.s3 import Storage
from sync_service.errors import ConfigError
from tests.realparts import S3

SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
HOSTILE_TITLES = [
    "../../etc/passwd",
    "../",
    "..",
    ".",
    "a/b/../../c",
    "a\\b\\..\\c",
    "/absolute/path",
    "name\x00with\x00nul",
    "\x1b[31mred\x1b[0m\r\n\t",
    "x" * 300,
    "Ünïcödé ① ／ ∕ ⁄",  # lookalike slashes
    "\u202eevil\u202c",
    "%2e%2e%2f%2e%2e",
    "   ",
    "CON",
    "s3://other-bucket/key",
]


@pytest.mark.parametrize("title", HOSTILE_TITLES)
def test_slugify_escapes_every_hostile_title(title: str) -> None:
    slug = slugify(title)
    assert SLUG.match(slug) and len(slug) <= MAX_SLUG, slug


@given(st.text())
def test_slugify_never_leaves_the_folder(title: str) -> None:
    slug = slugify(title)
    assert SLUG.match(slug) and len(slug) <= MAX_SLUG


BASE_ENV = {
    "CUSTOMLABELS_LS_API_KEY": "token",
    "CUSTOMLABELS_BUCKET": "bucket",
    "CUSTOMLABELS_WEBHOOK_SECRET": "a-webhook-secret-of-some-length",
}


@pytest.mark.parametrize(
    "prefix",
    [
        "../evil",
        "a/../b",
        "a/./b",
        "..",
        "a//b",
        "a b",
        "a\x00b",
        "a\nb",
        "a\\b",
        "%2e%2e",
        "é",
        "x" * 600,
    ],
)
def test_a_hostile_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings({**BASE_ENV, "CUSTOMLABELS_PREFIX": prefix})
    assert raised.value.variable == "CUSTOMLABELS_PREFIX"


@pytest.mark.parametrize(
    "prefix", ["", "customlabels", "/team/datasets/", "a.b_c-d/e", "x" * 300, "a/" * 200]
)
def test_an_accepted_prefix_keeps_every_key_under_it(prefix: str) -> None:
    settings = load_settings({**BASE_ENV, "CUSTOMLABELS_PREFIX": prefix})
    projects = Projects(redis=None, storage=None, prefix=settings.prefix)  # type: ignore[arg-type]
    for title in HOSTILE_TITLES:
        info = ProjectInfo(label_studio_project_id=1, title=title, slug=slugify(title))
        key = projects.key(info, "train.manifest")
        folder = f"{settings.prefix}/{info.slug}/" if settings.prefix else f"{info.slug}/"
        assert key == folder + "train.manifest"
        assert ".." not in key.split("/") and "//" not in key


def test_the_cli_prefix_option_is_checked_like_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found by these tests: ``project create --prefix ../evil`` went unchecked (only the environment
    variable was), so project.json and every manifest went to keys under ``../evil/``."""
    for name, value in {**BASE_ENV, "CUSTOMLABELS_S3_ENDPOINT": "http://127.0.0.1:9"}.items():
        monkeypatch.setenv(name, value)
    called: list[Any] = []
    monkeypatch.setattr(bootstrap, "create_project", lambda *a, **k: called.append((a, k)))
    code = main(["project", "create", "--title", "Cats and dogs", "--prefix", "../evil"])
    assert code == 2 and not called
    assert "--prefix" in capsys.readouterr().err


# --------------------------------------------------------------------------- create_project, for real S3


class FakeLabelStudio:
    """The parts of the Label Studio edge ``create_project`` calls, recording what it was asked to create."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def project_by_title(self, title: str) -> dict[str, Any] | None:
        return None

    def create_project(self, *, title: str, label_config: str) -> dict[str, Any]:
        self.created.append({"title": title, "label_config": label_config})
        return {"id": 424242, "title": title, "label_config": label_config}

    def s3_storages(self, project_id: int) -> list[dict[str, Any]]:
        return []

    def webhooks(self, project_id: int) -> list[dict[str, Any]]:
        return []

    def views(self, project_id: int) -> list[dict[str, Any]]:
        return []

    def create_s3_storage(self, project_id: int, **fields: Any) -> dict[str, Any]:
        return {"id": 1}

    def create_webhook(self, project_id: int, **fields: Any) -> dict[str, Any]:
        return {"id": 1}

    def create_view(self, project_id: int, data: dict[str, Any]) -> dict[str, Any]:
        return {"id": 1, "data": data}


@pytest.fixture
def real_projects(
    s3: S3, bucket: str, redis_url: str
) -> Iterator[tuple[Settings, Projects, FakeLabelStudio]]:
    settings = Settings(
        ls_url="http://127.0.0.1:9",
        ls_api_key="unused",
        redis_url=redis_url,
        s3_endpoint=s3.endpoint_url,
        s3_region="us-east-1",
        bucket=bucket,
        prefix=f"hostile-{uuid.uuid4().hex[:6]}/names",
        webhook_secret="a-webhook-secret-of-some-length",
    )
    redis = Redis.from_url(redis_url)
    fake = FakeLabelStudio()
    yield settings, Projects(redis, Storage(s3.client, bucket), settings.prefix), fake
    redis.hdel("cl:projects", "424242")
    redis.close()


@pytest.mark.parametrize(
    "title", [t for t in HOSTILE_TITLES if 3 <= len(t.strip()) <= 50 and t.isprintable()]
)
def test_create_project_writes_only_inside_its_folder(
    real_projects: tuple[Settings, Projects, FakeLabelStudio],
    s3: S3,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    title: str,
) -> None:
    settings, projects, fake = real_projects
    monkeypatch.setattr(bootstrap, "label_studio", lambda _settings: fake)
    made = bootstrap.create_project(settings, projects, title=title, labels=["cat"])
    keys = [o["Key"] for o in s3.client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == [f"{settings.prefix}/{made.info.slug}/project.json"], keys
    assert SLUG.match(made.info.slug)


@pytest.mark.parametrize(
    ("title", "labels"),
    [
        ("x" * 300, ["cat"]),  # Label Studio takes 50 characters at most
        ("a\x00b title", ["cat"]),
        ("Fine title", ["ca\x00t"]),
        ("Fine title", ["\x1b[31mred"]),
        ("Fine title", ["x" * 300]),  # Rekognition takes label names of 256 characters at most
        ("Fine title", ["line\nbreak"]),
    ],
)
def test_create_project_refuses_what_label_studio_or_rekognition_cannot_take(
    real_projects: tuple[Settings, Projects, FakeLabelStudio],
    s3: S3,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
    title: str,
    labels: list[str],
) -> None:
    """Found by these tests: a label with a control character made a labeling config that is not XML,
    sent to Label Studio as is; a 300-character title or label went through to fail later."""
    settings, projects, fake = real_projects
    monkeypatch.setattr(bootstrap, "label_studio", lambda _settings: fake)
    with pytest.raises(ValueError, match=r"title|label"):
        bootstrap.create_project(settings, projects, title=title, labels=labels)
    assert fake.created == []
    assert s3.client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


@pytest.mark.parametrize("label", ["../cat", "a/b", '<&">', "  spaced  ", "x" * 256])
def test_odd_but_legal_label_names_are_escaped_into_the_config(
    real_projects: tuple[Settings, Projects, FakeLabelStudio], monkeypatch: pytest.MonkeyPatch, label: str
) -> None:
    from converters.labelconfig import label_lists, parse_label_config  # noqa: PLC0415

    settings, projects, fake = real_projects
    monkeypatch.setattr(bootstrap, "label_studio", lambda _settings: fake)
    made = bootstrap.create_project(replace(settings), projects, title="Odd labels", labels=[label])
    assert label_lists(parse_label_config(fake.created[0]["label_config"]))["label"] == [label]
    assert SLUG.match(made.info.slug)
