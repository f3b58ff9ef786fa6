"""The service subcommands of ``customlabels``: ``serve``, ``worker`` and ``project create``.

They read their settings from the environment (see ``sync_service.config``); a missing or wrong
setting stops them at once with a message naming the variable (exit code 2).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from converters.labelconfig import TEMPLATES
from sync_service.config import Settings, check_prefix, load_settings
from sync_service.errors import ConfigError, ServiceError


def _settings() -> Settings:
    return load_settings()


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the Flask app under gunicorn."""
    from sync_service.server import serve  # noqa: PLC0415 (gunicorn only for this command)

    serve(_settings(), host=args.host, port=args.port, workers=args.workers, threads=args.threads)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run an RQ worker (with the scheduler and the periodic reconcile)."""
    from sync_service.worker import run_worker  # noqa: PLC0415

    run_worker(_settings(), burst=args.burst)
    return 0


def cmd_project_create(args: argparse.Namespace) -> int:
    """Create (or find) a Label Studio project with storage, webhook, tabs and ``project.json``."""
    from plugin.bootstrap import create_project  # noqa: PLC0415
    from sync_service.jobs import make_context  # noqa: PLC0415

    settings = _settings()
    if args.bucket:
        settings = _with(settings, bucket=args.bucket)
    if args.prefix is not None:
        settings = _with(settings, prefix=check_prefix(args.prefix, "--prefix"))
    ctx = make_context(settings)
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    try:
        made = create_project(
            settings,
            ctx.projects,
            title=args.title,
            template=args.template,
            labels=_names(args.labels),
            box_labels=_names(args.box_labels or args.labels),
            datasets=args.datasets,
            s3_credentials=(key, secret) if key and secret else None,
        )
    except ValueError as exc:  # a title or label name Label Studio or Rekognition cannot take
        print(f"error: {exc}", file=sys.stderr)
        return 2
    folder = ctx.projects.key(made.info, "")
    result = {
        "project": made.info.label_studio_project_id,
        "created": made.created,
        "title": made.info.title,
        "s3": f"s3://{settings.bucket}/{folder}",
        "storage": made.storage_id,
        "webhook": made.webhook_id,
        "tabs": list(made.view_ids),
        "datasets": sorted(made.info.datasets or ("test", "train")),
    }
    if args.json:
        print(json.dumps(result))
    else:
        verb = "created" if made.created else "already there:"
        print(f"{verb} project {result['project']} {made.info.title!r}; manifests in {result['s3']}")
    return 0


def _datasets(text: str) -> list[str]:
    names = _names(text)
    if not names or "train" not in names or any(n not in ("train", "test") for n in names):
        raise argparse.ArgumentTypeError("--datasets takes train or train,test")
    return list(dict.fromkeys(names))


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _with(settings: Settings, **changes: Any) -> Settings:
    from dataclasses import replace  # noqa: PLC0415

    return replace(settings, **changes)


def add_parsers(sub: Any) -> None:
    """Add the service subcommands to ``customlabels``' subparsers."""
    p = sub.add_parser("serve", help="run the sync service (webhooks, REST API) under gunicorn")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=int(os.environ.get("CUSTOMLABELS_PORT", "5000")))
    p.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    p.add_argument("--threads", type=int, default=4, help="threads per worker process (default 4)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("worker", help="run a sync worker (RQ) that publishes manifests to S3")
    p.add_argument("--burst", action="store_true", help="stop when the queue is empty")
    p.set_defaults(func=cmd_worker)

    project = sub.add_parser("project", help="Label Studio projects for Rekognition Custom Labels")
    psub = project.add_subparsers(dest="project_command", metavar="ACTION")
    p = psub.add_parser("create", help="create a project: template, S3 storage, webhook, dataset tabs")
    p.add_argument("--title", required=True, help="project title (at least 3 characters)")
    p.add_argument("--bucket", help="S3 bucket (default: CUSTOMLABELS_BUCKET)")
    p.add_argument("--prefix", help="key prefix in the bucket (default: CUSTOMLABELS_PREFIX)")
    p.add_argument("--template", choices=TEMPLATES, default="both", help="labeling config (default both)")
    p.add_argument("--labels", default="", help="image-level labels, comma-separated (add more later)")
    p.add_argument("--box-labels", default="", help="box labels, comma-separated (default: --labels)")
    p.add_argument(
        "--datasets",
        default="train,test",
        type=_datasets,
        help="the datasets the project starts with: train (a single dataset) or train,test (default)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_project_create)

    from plugin.localstack import add_parsers as add_stack_parsers  # noqa: PLC0415

    add_stack_parsers(sub)  # up, down, doctor

    from plugin import dataset_cli  # noqa: PLC0415 (its module imports the whole service)

    dataset_cli.add_parsers(sub)


def run_service_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a service command, turning configuration and service errors into messages and exit codes."""
    try:
        return func(args)
    except ConfigError as exc:
        print(f"error: configuration: {exc}", file=sys.stderr)
        return 2
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
