"""``customlabels project create``: a Label Studio project shaped for Rekognition Custom Labels.

Each step looks first and creates only what is missing, so running it twice for one title leaves one
project, one storage, one webhook and two tabs:

1. the project, from a labeling-config template (classification, multilabel, detection, both);
2. ``project.json`` in S3 (and the Redis cache of it), which makes the project one of ours;
3. an S3 import storage on the project's folder, so ``s3://`` images display (nothing is imported);
4. the webhook to the sync service, with the shared secret in a custom header;
5. Data Manager tabs "Training dataset" and "Test dataset", filtering on ``data.dataset``.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from converters.codes import DEFAULT_LIMITS
from converters.labelconfig import build_label_config, label_lists, parse_label_config
from sync_service.config import SECRET_HEADER, Settings
from sync_service.domain.datasets import dataset_record
from sync_service.domain.events import HANDLED
from sync_service.domain.projects import ProjectInfo, Projects, slugify
from sync_service.domain.tabs import TABS, tab_filter, tab_ids
from sync_service.edges.labelstudio import LabelStudio
from sync_service.edges.state import ProjectState
from sync_service.errors import LabelStudioError

WEBHOOK_PATH = "/webhooks/label-studio"
MAX_TITLE = 50  # Label Studio's PROJECT_TITLE_MAX_LEN
MAX_LABEL = DEFAULT_LIMITS.max_label_name
_REKOGNITION_NAME = re.compile(r"^[a-zA-Z0-9_.\-]{1,255}$")
IMAGE_REGEX = r".*\.(jpe?g|JPE?G|png|PNG)$"


@dataclass(frozen=True, slots=True)
class Created:
    """What ``project create`` found or made."""

    info: ProjectInfo
    created: bool
    storage_id: int
    webhook_id: int
    view_ids: tuple[int, ...]


def label_studio(settings: Settings) -> LabelStudio:
    """The Label Studio edge for ``settings`` (creates are sent once: the edge never retries them)."""
    return LabelStudio(settings.ls_url, settings.ls_api_key)


@contextmanager
def label_studio_errors(settings: Settings, *, probe: bool = False) -> Iterator[None]:
    """Turn the edge's errors into one-line :class:`LabelStudioError` messages that name Label Studio's
    URL and what to fix. ``probe``: the first call, so a 401/403 means the API key (later, a 403 is
    more likely Label Studio refusing a private URL: the reason it gives is quoted)."""
    where = f"Label Studio at {settings.ls_url}"
    try:
        yield
    except LabelStudioError as exc:
        code = exc.status
        if code is None:
            cause = type(exc.__cause__).__name__ if exc.__cause__ is not None else "no answer"
            raise LabelStudioError(
                f"{where} does not answer ({cause}); is it running? (or set CUSTOMLABELS_LS_URL)",
                method=exc.method,
                path=exc.path,
            ) from None
        detail = exc.detail or "no reason given"
        if code == 401 or (probe and code == 403):
            raise LabelStudioError(
                f"{where} refused the API key (HTTP {code}: {detail}); "
                "set CUSTOMLABELS_LS_API_KEY to a valid token (Label Studio: Account & Settings)",
                method=exc.method,
                path=exc.path,
                status=code,
            ) from None
        raise LabelStudioError(
            f"{where} answered HTTP {code}: {detail}", method=exc.method, path=exc.path, status=code
        ) from None


def create_project(
    settings: Settings,
    projects: Projects,
    *,
    title: str,
    template: str = "both",
    labels: Sequence[str] = (),
    box_labels: Sequence[str] = (),
    datasets: Sequence[str] = ("train", "test"),
    name: str | None = None,
    s3_credentials: tuple[str, str] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Created:
    """Create (or find) the project titled ``title`` and make sure every part of it is in place.

    Label Studio away, or refusing the API key: :class:`LabelStudioError` naming its URL and the setting.
    """
    if len(title.strip()) < 3:
        raise ValueError("a project title needs at least 3 characters")
    check_names(title, [*labels, *box_labels])
    ls = label_studio(settings)
    with label_studio_errors(settings, probe=True):
        project = ls.project_by_title(title)
    created = project is None
    with label_studio_errors(settings):
        if project is None:
            config = build_label_config(template=template, choices=labels, boxes=box_labels)
            project = ls.create_project(title=title, label_config=config)
        pid = int(project["id"])
        existing = projects.find(pid)
        declared = label_lists(parse_label_config(str(project.get("label_config") or "")))
        info = existing or ProjectInfo(
            label_studio_project_id=pid,
            title=title,
            slug=_free_slug(projects, slugify(title), pid),
            test_fraction=test_fraction,
            seed=seed,
            labels=declared,
            name=name or (title if _REKOGNITION_NAME.match(title) else ""),
            created=time.time(),
            datasets={dataset: dataset_record() for dataset in datasets},
        )
        # project.json first: Label Studio refuses a storage whose prefix holds no object yet.
        projects.save(info)
        storage_id = _ensure_storage(ls, settings, projects, info, s3_credentials)
        webhook_id, _ = ensure_webhook(ls, settings, pid)
        view_ids = _ensure_tabs(ls, pid)
    return Created(info, created, storage_id, webhook_id, view_ids)


def delete_project(settings: Settings, projects: Projects, info: ProjectInfo) -> None:
    """Delete a project of ours: the Label Studio project (tasks, storage, webhook, tabs), then our
    record, manifests and validation files in S3 and what Redis keeps of it. Images and snapshots
    stay in S3 (they may be the only copy of uploads, and snapshots are never deleted)."""
    pid = info.label_studio_project_id
    label_studio(settings).delete_project(pid)  # already gone (404): the rest is still ours to remove
    keys = [projects.key(info, name) for name in ("project.json", "train.manifest", "test.manifest")]
    keys += projects.storage.list_keys(projects.key(info, "validation/"))
    projects.storage.delete_keys(keys)
    ProjectState(projects.redis, pid).forget()
    projects.forget(pid)


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)


def check_names(title: str, labels: Sequence[str]) -> None:
    """Refuse, before anything is created, a title Label Studio would refuse and label names that a
    labeling config cannot carry (control characters are not XML) or Rekognition would refuse."""
    if len(title) > MAX_TITLE:
        raise ValueError(f"a project title has at most {MAX_TITLE} characters; this one has {len(title)}")
    if _has_control(title):
        raise ValueError(f"the project title {title!r} holds control characters")
    for label in labels:
        if _has_control(label):
            raise ValueError(f"the label {label!r} holds control characters")
        if len(label) > MAX_LABEL:
            raise ValueError(
                f"the label {label[:40]!r}... has {len(label)} characters; Rekognition takes {MAX_LABEL} at most"
            )


def _free_slug(projects: Projects, slug: str, pid: int) -> str:
    found = projects.find_by_slug(slug)
    if found is None or found.label_studio_project_id == pid:
        return slug
    return f"{slug}-{pid}"


def _ensure_storage(
    ls: LabelStudio,
    settings: Settings,
    projects: Projects,
    info: ProjectInfo,
    credentials: tuple[str, str] | None,
) -> int:
    for storage in ls.s3_storages(info.label_studio_project_id):
        if storage.get("bucket") == settings.bucket:
            return int(storage["id"])
    fields: dict[str, Any] = {}
    if credentials is not None:
        fields.update(aws_access_key_id=credentials[0], aws_secret_access_key=credentials[1])
    if settings.s3_endpoint:
        fields["s3_endpoint"] = settings.s3_endpoint
    storage = ls.create_s3_storage(
        info.label_studio_project_id,
        title=f"customlabels {settings.bucket}",
        bucket=settings.bucket,
        prefix=projects.key(info, ""),
        regex_filter=IMAGE_REGEX,
        use_blob_urls=True,
        presign=True,
        presign_ttl=15,
        recursive_scan=True,
        region_name=settings.s3_region,
        **fields,
    )
    return int(storage["id"])


def webhook_fields(settings: Settings) -> dict[str, Any]:
    """The webhook every project of ours has: our URL, the secret header, whole payloads, the actions
    the service acts on (PROJECT_DELETED aside: the open-source server never delivers it), active."""
    return {
        "url": settings.service_url.rstrip("/") + WEBHOOK_PATH,
        "send_payload": True,
        "send_for_all_actions": False,
        "headers": {SECRET_HEADER: settings.webhook_secret},
        "is_active": True,
        "actions": sorted(HANDLED - {"PROJECT_DELETED"}),
    }


def ensure_webhook(ls: LabelStudio, settings: Settings, pid: int) -> tuple[int, list[str]]:
    """Make the project's webhook to us what :func:`webhook_fields` says; returns its id and what was
    repaired: the names of the fields changed (``url`` when it was made), and ``duplicates`` when
    more than one webhook was ours.

    Ours is the webhook to our URL, or else one that carries our secret header (the service moved: its
    URL is changed rather than a second webhook made). Label Studio delivers each webhook inside the
    save that caused it, waiting up to a second for the answer: a webhook left behind at an old address
    would hold up every save, and a second one of ours would double the wait, so the others of ours are
    deleted."""
    wanted = webhook_fields(settings)
    hooks = [hook for hook in ls.webhooks(pid) if hook.get("project") == pid]
    ours = [hook for hook in hooks if hook.get("url") == wanted["url"]] + [
        hook
        for hook in hooks
        if hook.get("url") != wanted["url"]
        and (hook.get("headers") or {}).get(SECRET_HEADER) == settings.webhook_secret
    ]
    if not ours:
        made = ls.create_webhook(pid, **wanted)
        return int(made["id"]), ["url"]
    hook, others = ours[0], ours[1:]
    wrong = [
        name
        for name, value in wanted.items()
        if (
            sorted(hook.get(name) or ()) != value
            if name == "actions"
            else (hook.get(name) or {}).get(SECRET_HEADER) != settings.webhook_secret
            if name == "headers"
            else hook.get(name) != value
        )
    ]
    if wrong:
        # Label Studio 1.23 sets a webhook's actions to those of every PATCH (none when the PATCH
        # names none): they go with each repair.
        fix = dict.fromkeys(("url", "actions", *wrong))
        ls.update_webhook(int(hook["id"]), **{name: wanted[name] for name in fix})
    for other in others:
        ls.delete_webhook(int(other["id"]))
    return int(hook["id"]), [*wrong, "duplicates"] if others else wrong


def _ensure_tabs(ls: LabelStudio, pid: int) -> tuple[int, ...]:
    have = tab_ids(ls.views(pid))
    ids = []
    for title, dataset in TABS:
        if title in have:
            ids.append(have[title])
            continue
        view = ls.create_view(pid, {"title": title, "filters": tab_filter(dataset)})
        ids.append(int(view["id"]))
    return tuple(ids)
