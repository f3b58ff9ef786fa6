"""The service's settings, read once from environment variables with documented defaults.

| variable | default | meaning |
|---|---|---|
| ``CUSTOMLABELS_LS_URL`` | ``http://127.0.0.1:8080`` | Label Studio's base URL |
| ``CUSTOMLABELS_LS_API_KEY`` | (required) | Label Studio API token (legacy token or personal access token) |
| ``CUSTOMLABELS_REDIS_URL`` | ``redis://127.0.0.1:6379/0`` | Redis for queues, locks and caches |
| ``CUSTOMLABELS_S3_ENDPOINT`` | empty = AWS | S3 endpoint URL (MinIO, moto) |
| ``CUSTOMLABELS_S3_REGION`` | ``us-east-1`` | S3 region |
| ``CUSTOMLABELS_BUCKET`` | (required) | bucket of the projects' manifests and images |
| ``CUSTOMLABELS_PREFIX`` | ``customlabels`` | key prefix of all projects in the bucket |
| ``CUSTOMLABELS_WEBHOOK_SECRET`` | (required) | shared secret Label Studio sends in ``X-Customlabels-Secret`` |
| ``CUSTOMLABELS_DEBOUNCE_SECONDS`` | ``0.25`` | seconds a publish waits after the first event it will take (a burst is published once) |
| ``CUSTOMLABELS_RECONCILE_SECONDS`` | ``300`` | period of the full reconcile of every project, seconds |
| ``CUSTOMLABELS_LS_EXPORT_CONCURRENCY`` | ``2`` | Label Studio export requests a worker keeps in flight while it reads a project (1 to 16; more only helps a Label Studio served by several processes) |
| ``CUSTOMLABELS_MAX_WEBHOOK_BYTES`` | ``10485760`` | largest webhook body accepted (413 above), bytes |
| ``CUSTOMLABELS_QUEUE`` | ``customlabels`` | RQ queue name |
| ``CUSTOMLABELS_SERVICE_URL`` | ``http://127.0.0.1:5000`` | where Label Studio reaches this service (webhooks) |
| ``CUSTOMLABELS_API_ACCESS_KEY_ID`` | empty = endpoint refuses all | access key id clients of the Rekognition-compatible endpoint sign with (SigV4) |
| ``CUSTOMLABELS_API_SECRET_ACCESS_KEY`` | empty = endpoint refuses all | its secret (at least 16 characters; set both or neither) |
| ``CUSTOMLABELS_API_ACCOUNT_ID`` | ``123456789012`` | the 12-digit account id in the endpoint's ARNs |

AWS credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID`` ...).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

from sync_service.errors import ConfigError

SECRET_HEADER = "X-Customlabels-Secret"
_PREFIX_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
MAX_PREFIX = 512  # S3 keys have 1,024 bytes: room for the project folder and the file names
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ACCESS_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # no '/', ',' or blanks: it sits in a SigV4 scope
_ACCOUNT_RE = re.compile(r"^[0-9]{12}$")
DEFAULT_ACCOUNT_ID = "123456789012"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the service and its workers need to know about their surroundings."""

    ls_url: str
    ls_api_key: str
    redis_url: str
    s3_endpoint: str | None
    s3_region: str
    bucket: str
    prefix: str
    webhook_secret: str
    debounce_seconds: float = 0.25
    reconcile_seconds: float = 300.0
    ls_export_concurrency: int = 2
    max_webhook_bytes: int = 10 * 1024 * 1024
    queue: str = "customlabels"
    service_url: str = "http://127.0.0.1:5000"
    # The Rekognition-compatible endpoint: the one key pair it accepts (None: it refuses every request).
    api_access_key_id: str | None = None
    api_secret_access_key: str | None = None
    api_account_id: str = DEFAULT_ACCOUNT_ID

    def __repr__(self) -> str:
        # Secrets never reach logs or error messages, not even through a repr.
        return (
            f"Settings(ls_url={self.ls_url!r}, redis_url={_redact_url(self.redis_url)!r}, "
            f"s3_endpoint={self.s3_endpoint!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"
        )


def _redact_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


def _url(env: Mapping[str, str], name: str, default: str | None, schemes: tuple[str, ...]) -> str:
    value = env.get(name, "").strip() or default
    if value is None:
        raise ConfigError(name, "is required")
    want = f"must be a {' or '.join(schemes)} URL"
    try:
        parsed = urlparse(value)
        parsed.port  # noqa: B018 - parses the port: ValueError when it is not a number
    except ValueError:
        raise ConfigError(name, f"{want}; this one does not parse") from None
    if parsed.scheme not in schemes or not parsed.netloc:
        # Never the value itself: it may hold a password, or be a secret pasted into the wrong variable.
        raise ConfigError(name, f"{want}, got one with scheme {parsed.scheme[:10]!r}")
    return value.rstrip("/")


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(name, "is required")
    return value


def _api_keys(env: Mapping[str, str]) -> tuple[str | None, str | None]:
    key_id = env.get("CUSTOMLABELS_API_ACCESS_KEY_ID", "").strip() or None
    secret = env.get("CUSTOMLABELS_API_SECRET_ACCESS_KEY", "").strip() or None
    if key_id is None and secret is not None:
        raise ConfigError("CUSTOMLABELS_API_ACCESS_KEY_ID", "is required when the secret access key is set")
    if secret is None and key_id is not None:
        raise ConfigError("CUSTOMLABELS_API_SECRET_ACCESS_KEY", "is required when the access key id is set")
    if key_id is not None and not _ACCESS_KEY_RE.match(key_id):
        raise ConfigError("CUSTOMLABELS_API_ACCESS_KEY_ID", "may hold only letters, digits, _ and - (1..128)")
    if secret is not None and len(secret) < 16:
        raise ConfigError("CUSTOMLABELS_API_SECRET_ACCESS_KEY", "must be at least 16 characters")
    return key_id, secret


def check_prefix(value: str, variable: str = "CUSTOMLABELS_PREFIX") -> str:
    """``value`` without the slashes around it, if it is a safe key prefix: segments of letters, digits,
    ``. _ -``, none of them ``.`` or ``..``, at most :data:`MAX_PREFIX` characters; else a
    :class:`ConfigError` naming ``variable`` (the setting, or the command-line option)."""
    prefix = value.strip().strip("/")
    if prefix and (
        not _PREFIX_RE.fullmatch(prefix) or {".", ".."} & set(prefix.split("/")) or len(prefix) > MAX_PREFIX
    ):
        raise ConfigError(
            variable,
            f"{prefix[:80]!r} may hold only letters, digits, . _ - and / (no . or .. segments, "
            f"at most {MAX_PREFIX} characters)",
        )
    return prefix


def _number(
    env: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float,
    maximum: float | None = None,
    whole: bool = False,
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a {'whole ' if whole else ''}number, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise ConfigError(name, f"must be {bounds}, got {raw!r}")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read :class:`Settings` from ``env`` (default ``os.environ``); raise :class:`ConfigError` naming a bad one."""
    env = os.environ if env is None else env
    bucket = _required(env, "CUSTOMLABELS_BUCKET")
    if not _BUCKET_RE.match(bucket):
        raise ConfigError("CUSTOMLABELS_BUCKET", f"{bucket!r} is not a valid S3 bucket name")
    prefix = check_prefix(env.get("CUSTOMLABELS_PREFIX", "customlabels"))
    endpoint = env.get("CUSTOMLABELS_S3_ENDPOINT", "").strip()
    secret = _required(env, "CUSTOMLABELS_WEBHOOK_SECRET")
    if len(secret) < 16:
        raise ConfigError("CUSTOMLABELS_WEBHOOK_SECRET", "must be at least 16 characters")
    api_key_id, api_secret = _api_keys(env)
    account = env.get("CUSTOMLABELS_API_ACCOUNT_ID", "").strip() or DEFAULT_ACCOUNT_ID
    if not _ACCOUNT_RE.match(account):
        raise ConfigError("CUSTOMLABELS_API_ACCOUNT_ID", f"must be 12 digits, got {account!r}")
    return Settings(
        ls_url=_url(env, "CUSTOMLABELS_LS_URL", "http://127.0.0.1:8080", ("http", "https")),
        ls_api_key=_required(env, "CUSTOMLABELS_LS_API_KEY"),
        redis_url=_url(
            env, "CUSTOMLABELS_REDIS_URL", "redis://127.0.0.1:6379/0", ("redis", "rediss", "unix")
        ),
        s3_endpoint=_url(env, "CUSTOMLABELS_S3_ENDPOINT", None, ("http", "https")) if endpoint else None,
        s3_region=env.get("CUSTOMLABELS_S3_REGION", "").strip() or "us-east-1",
        bucket=bucket,
        prefix=prefix,
        webhook_secret=secret,
        debounce_seconds=_number(env, "CUSTOMLABELS_DEBOUNCE_SECONDS", 0.25, minimum=0.0),
        reconcile_seconds=_number(env, "CUSTOMLABELS_RECONCILE_SECONDS", 300.0, minimum=1.0),
        ls_export_concurrency=int(
            _number(env, "CUSTOMLABELS_LS_EXPORT_CONCURRENCY", 2, minimum=1, maximum=16, whole=True)
        ),
        max_webhook_bytes=int(_number(env, "CUSTOMLABELS_MAX_WEBHOOK_BYTES", 10 * 1024 * 1024, minimum=1024)),
        queue=env.get("CUSTOMLABELS_QUEUE", "").strip() or "customlabels",
        service_url=_url(env, "CUSTOMLABELS_SERVICE_URL", "http://127.0.0.1:5000", ("http", "https")),
        api_access_key_id=api_key_id,
        api_secret_access_key=api_secret,
        api_account_id=account,
    )
