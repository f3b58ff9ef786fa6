"""The service subcommands of ``customlabels``: ``serve``, ``worker``, ``project create``, and
``project status`` / ``project resync``, which ask a running sync service over its REST API.

They read their settings from the environment (see ``sync_service.config``); a missing or wrong
setting stops them at once with a message naming the variable (exit code 2). ``project status`` and
``project resync`` need only the service's URL: ``--service-url``, else ``CUSTOMLABELS_SERVICE_URL``,
else the service of the local stack running from ``$CUSTOMLABELS_HOME`` (``customlabels up``), else
``http://127.0.0.1:5000``; and a bearer token the service accepts: ``CUSTOMLABELS_SERVICE_API_KEY``,
else your Label Studio token ``CUSTOMLABELS_LS_API_KEY``, else the local stack's admin token.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlparse

from converters.labelconfig import TEMPLATES
from plugin.cli import dataset
from plugin.cli.common import print_error_json, print_result
from plugin.progress import ItemProgress
from sync_service.config import DEFAULTS, Settings, check_prefix, load_settings
from sync_service.errors import ConfigError, ProjectNotFound, ServiceError

SERVICE_URL_VARIABLE = "CUSTOMLABELS_SERVICE_URL"
TOKEN_VARIABLES = ("CUSTOMLABELS_SERVICE_API_KEY", "CUSTOMLABELS_LS_API_KEY")
"""Where the commands find the bearer token they send, in order (then the local stack's admin token)."""
DEFAULT_SERVICE_URL = DEFAULTS.service_url
POLL_SECONDS = 0.5  # between two status requests of ``project resync --wait``
REQUEST_SECONDS = 10.0  # the longest one request to the service may take


def _settings() -> Settings:
    return load_settings()


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the Flask app under gunicorn."""
    from sync_service.web.server import serve  # noqa: PLC0415 - gunicorn costs start-up time

    serve(_settings(), host=args.host, port=args.port, workers=args.workers, threads=args.threads)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run an RQ worker (with the scheduler and the periodic reconcile)."""
    from sync_service.jobs.worker import run_worker  # noqa: PLC0415 - the service costs start-up time

    run_worker(_settings(), burst=args.burst)
    return 0


def cmd_project_create(args: argparse.Namespace) -> int:
    """Create (or find) a Label Studio project with storage, webhook, tabs and ``project.json``."""
    from sync_service.domain.bootstrap import create_project  # noqa: PLC0415 - the service costs start-up time
    from sync_service.domain.context import make_context  # noqa: PLC0415 - the service costs start-up time

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
        print_error_json(args, str(exc))
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


# ------------------------------------------------------------------------------ project status, resync


class ServiceCallError(ServiceError):
    """The sync service could not be reached, or answered with an error; the message names its URL."""


class ServiceClient:
    """The few REST calls the command line makes to a running sync service (``/api/v1``)."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = REQUEST_SECONDS) -> None:
        import httpx  # noqa: PLC0415 - httpx costs start-up time

        self.url = url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # A proxy from the environment is for the outside world, never for a service on this machine.
        self._http = httpx.Client(
            base_url=url, timeout=timeout, trust_env=not _loopback(url), headers=headers
        )
        self._errors: tuple[type[Exception], ...] = (httpx.HTTPError,)

    def status(self, project_id: int) -> dict[str, Any]:
        """``GET /api/v1/projects/<id>/status``."""
        return self._call("GET", f"/api/v1/projects/{project_id}/status", project_id)

    def resync(self, project_id: int) -> dict[str, Any]:
        """``POST /api/v1/projects/<id>/resync``: the queued job (``{"status": "queued", "job": id}``)."""
        return self._call("POST", f"/api/v1/projects/{project_id}/resync", project_id)

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def _call(self, method: str, path: str, project_id: int) -> dict[str, Any]:
        where = f"{self.url}{path}"
        try:
            response = self._http.request(method, path)
        except self._errors as exc:
            raise ServiceCallError(
                f"the sync service at {self.url} does not answer ({type(exc).__name__}: {exc or 'no reply'}); "
                f"is it running? (`customlabels up`; or set --service-url / {SERVICE_URL_VARIABLE})"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        message = body.get("message") if isinstance(body, dict) else None
        if response.status_code == 404 and message:
            raise ProjectNotFound(f"{message} ({where})")
        if response.status_code == 401:
            raise ServiceCallError(
                f"{method} {where} answered 401: {message or 'no credentials'}; set "
                f"{' or '.join(TOKEN_VARIABLES)} (your Label Studio token, Account & Settings)"
            )
        if response.status_code >= 400 or not isinstance(body, dict):
            detail = message or (response.text[:200].strip() or "no body")
            if not isinstance(body, dict) and response.status_code < 400:
                detail = f"not JSON; is {self.url} the sync service?"
            raise ServiceCallError(
                f"{method} {where} answered {response.status_code}: {detail}"
                + (f" (project {project_id})" if response.status_code == 404 else "")
            )
        return body


def service_url(explicit: str | None, env: Mapping[str, str] | None = None) -> str:
    """The sync service's base URL: ``explicit`` (``--service-url``), else ``CUSTOMLABELS_SERVICE_URL``,
    else the local stack's service if one runs from this home, else :data:`DEFAULT_SERVICE_URL`."""
    env = os.environ if env is None else env
    if explicit:
        return _checked_url(explicit, "--service-url")
    if env.get(SERVICE_URL_VARIABLE, "").strip():
        return _checked_url(env[SERVICE_URL_VARIABLE].strip(), SERVICE_URL_VARIABLE)
    return _stack_service_url(env) or DEFAULT_SERVICE_URL


def service_token(env: Mapping[str, str] | None = None) -> str | None:
    """The bearer token the commands send: the first of :data:`TOKEN_VARIABLES` that is set, else the
    Label Studio admin token of the local stack running from this home, else None."""
    env = os.environ if env is None else env
    for name in TOKEN_VARIABLES:
        if env.get(name, "").strip():
            return env[name].strip()
    from plugin.localstack.layout import Layout, resolve_home  # noqa: PLC0415 - the local stack costs start-up time
    from plugin.localstack.private_files import load_secrets  # noqa: PLC0415 - the local stack costs start-up time

    try:
        made = load_secrets(Layout(resolve_home(None, env)), create=False)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return made.token if made else None


def _checked_url(value: str, name: str) -> str:
    try:
        parsed = urlparse(value)
        parsed.port  # noqa: B018 - parses the port: ValueError when it is not a number
    except ValueError:
        raise ConfigError(name, "must be an http or https URL; this one does not parse") from None
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(name, f"must be an http or https URL, got {value[:80]!r}")
    return value.rstrip("/")


def _stack_service_url(env: Mapping[str, str]) -> str | None:
    """The service URL ``customlabels up`` recorded in its home's ``state.json``, if a stack runs there."""
    from plugin.localstack.layout import Layout, resolve_home  # noqa: PLC0415 - the local stack costs start-up time
    from plugin.localstack.record import StackRecord  # noqa: PLC0415 - the local stack costs start-up time

    try:
        path = Layout(resolve_home(None, env)).state
        if not path.is_file():
            return None
        url = StackRecord.from_json(json.loads(path.read_text())).urls.get("service")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(url).rstrip("/") if url else None


def _loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _project_id(ref: str) -> int:
    """A project's Label Studio id: PROJECT itself when it is a number, else found by its folder, title
    or Rekognition name (which needs the service's settings: S3 holds the projects' records)."""
    if ref.isdigit():
        return int(ref)
    return dataset.open_datasets().project(ref).label_studio_project_id


def cmd_project_status(args: argparse.Namespace) -> int:
    """Print the sync status of a project, as the service's status endpoint gives it."""
    url = service_url(args.service_url)
    client = ServiceClient(url, token=service_token())
    try:
        status = client.status(_project_id(args.project))
    finally:
        client.close()
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(format_status(status))
    return 0


def format_status(status: Mapping[str, Any]) -> str:
    """The readable form of a project's status."""

    def per_dataset(value: Any) -> str:
        if not isinstance(value, Mapping) or not value:
            return "none yet"
        return ", ".join(f"{name} {value[name]}" for name in sorted(value, key=_dataset_order))

    publish = status.get("last_publish") or "never"
    if status.get("last_publish_seconds") is not None:
        publish += f" (took {status['last_publish_seconds']} s)"
    lines = [
        f"project {status.get('project')} {status.get('title')!r} (folder {status.get('slug')})",
        f"  last publish    {publish}",
        f"  entries         {per_dataset(status.get('entries'))}",
        f"  labels          {per_dataset(status.get('labels'))}",
        f"  pending events  {status.get('pending_events', 0)}",
        f"  task errors     {status.get('task_error_count', 0)}",
        f"  last error      {status.get('last_error') or 'none'}"
        + (
            f" at {status['last_error_at']}"
            if status.get("last_error") and status.get("last_error_at")
            else ""
        ),
    ]
    return "\n".join(lines)


def _dataset_order(name: str) -> tuple[int, str]:
    """train, then test, then any other name."""
    return ({"train": 0, "test": 1}.get(name, 2), name)


def wait_for_publish(
    client: ServiceClient,
    project_id: int,
    before: Mapping[str, Any],
    *,
    timeout: float,
    progress: Callable[..., None],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, dict[str, Any]]:
    """Poll the project's status until a publish newer than ``before``'s (``"published"``), a new
    ``last_error`` (``"failed"``), or ``timeout`` seconds (``"timeout"``); returns that and the status
    last seen. A service that does not answer for a moment (a restart, 503) is asked again."""
    deadline = clock() + timeout
    status = dict(before)
    stage = "waiting for a worker to publish"
    while True:
        try:
            status = client.status(project_id)
            detail = f"{status.get('pending_events', 0)} pending events"
        except ServiceCallError:
            detail = "the service does not answer; asking again"
        if status.get("last_publish") and status.get("last_publish") != before.get("last_publish"):
            return "published", status
        if status.get("last_error") and status.get("last_error_at") != before.get("last_error_at"):
            return "failed", status
        if clock() >= deadline:
            return "timeout", status
        progress(stage, 0, None, detail=detail)
        sleep(min(POLL_SECONDS, max(deadline - clock(), 0.0)))


def cmd_project_resync(args: argparse.Namespace) -> int:
    """Queue a resync of a project; with ``--wait``, wait until it is published."""
    if args.timeout <= 0:
        raise ConfigError("--timeout", f"must be a positive number of seconds, got {args.timeout}")
    url = service_url(args.service_url)
    client = ServiceClient(url, token=service_token())
    started = time.monotonic()
    try:
        pid = _project_id(args.project)
        before = client.status(pid)
        job = client.resync(pid)
        result: dict[str, Any] = {
            "project": pid,
            "service_url": url,
            "job": job.get("job"),
            "status": "queued",
        }
        if not args.wait:
            text = f"resync of project {pid} queued (job {job.get('job')}); `customlabels project status {pid}` shows its publish"
            return print_result(args, result, text)
        progress = ItemProgress(tty=False if args.json else None, enabled=not args.quiet)
        try:
            outcome, status = wait_for_publish(client, pid, before, timeout=args.timeout, progress=progress)
        finally:
            progress.finish()
    finally:
        client.close()
    result.update(
        status=outcome,
        waited_seconds=round(time.monotonic() - started, 1),
        last_publish=status.get("last_publish"),
        pending_events=status.get("pending_events"),
        entries=status.get("entries"),
        last_error=status.get("last_error"),
    )
    if outcome == "published":
        entries = status.get("entries") or {}
        text = f"project {pid} published at {status.get('last_publish')}: " + ", ".join(
            f"{name} {entries[name]} entries" for name in sorted(entries, key=_dataset_order)
        )
        return print_result(args, result, text)
    if args.json:
        print(json.dumps(result, indent=2))
    if outcome == "failed":
        print(f"error: the resync of project {pid} failed: {status.get('last_error')}", file=sys.stderr)
    else:
        print(
            f"error: project {pid} was not published within {args.timeout:g} s "
            f"({status.get('pending_events', 0)} pending events); is a worker running? "
            "(`customlabels doctor` checks)",
            file=sys.stderr,
        )
    return 1


def _datasets(text: str) -> list[str]:
    names = _names(text)
    if not names or "train" not in names or any(n not in ("train", "test") for n in names):
        raise argparse.ArgumentTypeError("--datasets takes train or train,test")
    return list(dict.fromkeys(names))


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _with(settings: Settings, **changes: Any) -> Settings:

    return dataclasses.replace(settings, **changes)


def _service_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("project", metavar="PROJECT", help="project id, folder, title or Rekognition name")
    parser.add_argument(
        "--service-url",
        metavar="URL",
        help=f"the sync service (default: ${SERVICE_URL_VARIABLE}, else the local stack's, else {DEFAULT_SERVICE_URL})",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


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

    p = psub.add_parser(
        "status", help="a project's sync status: last publish, entries, pending events, errors"
    )
    _service_flags(p)
    p.set_defaults(func=cmd_project_status)

    p = psub.add_parser(
        "resync", help="rebuild a project's manifests from Label Studio (the service's resync)"
    )
    _service_flags(p)
    p.add_argument(
        "--wait", action="store_true", help="wait until the manifests are published (exit 1 if not)"
    )
    p.add_argument(
        "--timeout", type=float, default=300.0, metavar="S", help="with --wait: give up after S seconds (300)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress on standard error")
    p.set_defaults(func=cmd_project_resync)


def run_service_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a service command, turning configuration and service errors into messages and exit codes."""
    try:
        return func(args)
    except ConfigError as exc:
        print_error_json(args, f"configuration: {exc}")
        print(f"error: configuration: {exc}", file=sys.stderr)
        return 2
    except ServiceError as exc:
        print_error_json(args, str(exc))
        print(f"error: {exc}", file=sys.stderr)
        return 1
