"""The demo project (made once per home: project, storage, webhook, images in S3 and tasks) and the links
of every project of ours in Label Studio (S3 storages and webhooks), repointed at this stack's ports."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from converters.labelconfig import DEFAULT_BOXES_NAME, DEFAULT_CHOICES_NAME, DEFAULT_IMAGE_NAME
from plugin.localstack.errors import StackError
from plugin.localstack.plan import Plan
from plugin.localstack.private_files import Secrets
from plugin.localstack.record import utc_now
from plugin.localstack.s3_store import s3_client
from sync_service.errors import LabelStudioError

SAMPLES = Path(__file__).parent.parent / "samples"

if TYPE_CHECKING:
    from sync_service.edges.labelstudio import LabelStudio


def label_studio(plan: Plan, secrets_: Secrets) -> LabelStudio:
    """The stack's Label Studio through the service's one edge (a GET tried once: the server is ours)."""
    from sync_service.edges.labelstudio import LabelStudio  # noqa: PLC0415 - httpx costs start-up time

    return LabelStudio(plan.ls_url, secrets_.token, timeout=30, attempts=1)


def demo_definition() -> dict[str, Any]:
    """``plugin/samples/demo/demo.json``: the demo's title, labels and images."""
    raw: dict[str, Any] = json.loads((SAMPLES / "demo" / "demo.json").read_text())
    return raw


def demo_task(image: Mapping[str, Any], source_ref: str) -> dict[str, Any]:
    """The Label Studio task of one demo image, with its annotation when it has labels.

    Boxes are given in pixels of the displayed image (after EXIF orientation), as the browser shows
    it; Label Studio stores percent of that.
    """
    width, height = (int(v) for v in image["size"])
    results: list[dict[str, Any]] = []
    if image.get("label"):
        results.append(
            {
                "id": "c0",
                "from_name": DEFAULT_CHOICES_NAME,
                "to_name": DEFAULT_IMAGE_NAME,
                "type": "choices",
                "value": {"choices": [image["label"]]},
            }
        )
    for index, (label, left, top, box_w, box_h) in enumerate(image.get("boxes") or ()):
        results.append(
            {
                "id": f"b{index}",
                "from_name": DEFAULT_BOXES_NAME,
                "to_name": DEFAULT_IMAGE_NAME,
                "type": "rectanglelabels",
                "original_width": width,
                "original_height": height,
                "image_rotation": 0,
                "value": {
                    "x": 100.0 * left / width,
                    "y": 100.0 * top / height,
                    "width": 100.0 * box_w / width,
                    "height": 100.0 * box_h / height,
                    "rotation": 0,
                    "rectanglelabels": [label],
                },
            }
        )
    task: dict[str, Any] = {"data": {"image": source_ref, "dataset": image["dataset"]}}
    if results:
        task["annotations"] = [{"result": results}]
    return task


def ensure_demo(plan: Plan, secrets_: Secrets, settings: Any) -> dict[str, Any]:
    """Make the demo project once per home: project, storage, webhook, tabs, images in S3 and tasks.

    Later runs find it through ``demo.json`` and make nothing (a demo the user deleted stays deleted).
    """
    from sync_service.domain.bootstrap import create_project  # noqa: PLC0415 - boto3 and httpx cost start-up time
    from sync_service.domain.projects import Projects  # noqa: PLC0415 - boto3 costs start-up time
    from sync_service.edges.s3 import Storage  # noqa: PLC0415 - boto3 costs start-up time

    layout = plan.layout
    if layout.demo.exists():
        demo: dict[str, Any] = json.loads(layout.demo.read_text())
        demo["exists"] = (
            label_studio(plan, secrets_).find_project(int(demo["project"]), fields=("id",)) is not None
        )
        return demo
    definition = demo_definition()
    import redis  # noqa: PLC0415 - redis-py costs start-up time

    client = redis.Redis.from_url(plan.redis_url)
    try:
        storage = Storage(s3_client(plan), plan.bucket)
        projects = Projects(client, storage, plan.prefix)
        made = create_project(
            settings,
            projects,
            title=str(definition["title"]),
            template="both",
            labels=list(definition["labels"]),
            box_labels=list(definition["box_labels"]),
            s3_credentials=plan.s3_credentials(),
        )
        pid = made.info.label_studio_project_id
        folder = projects.key(made.info, "")
        tasks = []
        for image in definition["images"]:
            key = f"{folder}images/{image['file']}"
            storage.put_bytes(key, (SAMPLES / "demo" / image["file"]).read_bytes(), content_type="image/jpeg")
            tasks.append(demo_task(image, f"s3://{plan.bucket}/{key}"))
        ls = label_studio(plan, secrets_)
        project = ls.find_project(pid)
        if project is None:
            raise StackError(f"Label Studio does not show the demo project {pid} (HTTP 404)")
        if not int(project.get("task_number") or 0):
            ls.import_tasks(pid, tasks)
    finally:
        client.close()
    counts = {"train": 0, "test": 0}
    for image in definition["images"]:
        counts[str(image["dataset"])] += 1
    demo = {
        "project": pid,
        "title": made.info.title,
        "s3": f"s3://{plan.bucket}/{folder}",
        "tasks": counts,
        "created_at": utc_now(),
    }
    layout.demo.write_text(json.dumps(demo, indent=2) + "\n")
    demo["exists"] = True
    return demo


def our_projects(plan: Plan) -> list[dict[str, Any]]:
    """``project.json`` of every project under the prefix in the bucket (read from S3 only)."""
    client = s3_client(plan)
    base = f"{plan.prefix}/" if plan.prefix else ""
    out = []
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=plan.bucket, Prefix=base, Delimiter="/"):
        for common in page.get("CommonPrefixes", []):
            try:
                body = client.get_object(Bucket=plan.bucket, Key=f"{common['Prefix']}project.json")["Body"]
                out.append(json.loads(body.read()))
            except client.exceptions.NoSuchKey:
                continue
    return out


def project_links(plan: Plan, secrets_: Secrets) -> list[dict[str, Any]]:
    """For each project of ours: its S3 storages' endpoints and its webhooks' URLs in Label Studio."""
    from sync_service.domain.bootstrap import WEBHOOK_PATH  # noqa: PLC0415 - boto3 and httpx cost start-up time

    ls = label_studio(plan, secrets_)
    out = []
    for info in our_projects(plan):
        pid = int(info["label_studio_project_id"])
        try:
            storages = ls.s3_storages(pid)
        except LabelStudioError as exc:
            if exc.status == 404:  # a project deleted in Label Studio
                continue
            raise
        hooks = ls.webhooks(pid)
        out.append(
            {
                "project": pid,
                "title": info.get("title"),
                "storages": [
                    {"id": s.get("id"), "endpoint": s.get("s3_endpoint") or None}
                    for s in storages or ()
                    if isinstance(s, dict) and s.get("bucket") == plan.bucket
                ],
                "webhooks": [
                    {"id": h.get("id"), "url": h.get("url"), "actions": h.get("actions") or []}
                    for h in hooks or ()
                    if isinstance(h, dict) and str(h.get("url", "")).endswith(WEBHOOK_PATH)
                ],
            }
        )
    return out


def repoint_projects(plan: Plan, secrets_: Secrets) -> int:
    """Point every project's S3 storage and webhook at this stack (ports may differ from last time).

    Label Studio keeps the endpoint and the webhook URL it was given; a stack started on other ports
    would leave them pointing at nothing. Returns how many were changed.
    """
    from sync_service.domain.bootstrap import WEBHOOK_PATH  # noqa: PLC0415 - boto3 and httpx cost start-up time

    webhook = plan.service_url + WEBHOOK_PATH
    ls = label_studio(plan, secrets_)
    changed = 0
    for link in project_links(plan, secrets_):
        for storage in link["storages"]:
            if storage["endpoint"] != plan.s3_endpoint:
                ls.update_s3_storage(int(storage["id"]), s3_endpoint=plan.s3_endpoint)
                changed += 1
        for hook in link["webhooks"]:
            if hook["url"] != webhook:
                # Label Studio 1.23 sets a webhook's actions to those a PATCH names (none: all dropped).
                ls.update_webhook(int(hook["id"]), url=webhook, actions=hook["actions"])
                changed += 1
    return changed
