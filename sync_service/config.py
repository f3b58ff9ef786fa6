"""The service's settings, read once from environment variables with documented defaults.

Each setting is declared once, as a field of :class:`Settings`: its attribute and type, its default, its
variable, how environs parses and validates it, and its line in this table. ``tests/sync_service/
test_config.py`` checks the table below, the README's and ``docker/.env.example`` against those
declarations.

| variable | default | meaning |
|---|---|---|
| ``CUSTOMLABELS_LS_URL`` | ``http://127.0.0.1:8080`` | Label Studio's base URL |
| ``CUSTOMLABELS_LS_API_KEY`` | (required) | Label Studio API token (legacy token or personal access token) |
| ``CUSTOMLABELS_REDIS_URL`` | ``redis://127.0.0.1:6379/0`` | Redis for queues, locks and caches (no data: losing it loses nothing) |
| ``CUSTOMLABELS_S3_ENDPOINT`` | empty = AWS | S3 endpoint URL (MinIO, s3rver, moto) |
| ``CUSTOMLABELS_S3_REGION`` | ``us-east-1`` | S3 region |
| ``CUSTOMLABELS_BUCKET`` | (required) | bucket of the projects' manifests and images |
| ``CUSTOMLABELS_PREFIX`` | ``customlabels`` | key prefix of all projects in the bucket (empty: none) |
| ``CUSTOMLABELS_WEBHOOK_SECRET`` | (required) | shared secret Label Studio sends in ``X-Customlabels-Secret`` (16+ characters) |
| ``CUSTOMLABELS_DEBOUNCE_SECONDS`` | ``0.25`` | how long a publish waits after the first event it will take, so that a burst is published once (events that came in during the previous publish have waited already and are taken at once) |
| ``CUSTOMLABELS_RECONCILE_SECONDS`` | ``300`` | period of the reconcile of every project, seconds (1 or more): the tasks whose ``updated_at`` moved, tasks deleted without their webhook, the project's webhook |
| ``CUSTOMLABELS_FULL_RECONCILE_SECONDS`` | ``86400`` | period of the full reconcile (every task read again, every manifest written), seconds (60 or more); also after Redis was lost, on a label config change, on ``project resync`` and once Label Studio is back after a job found it away |
| ``CUSTOMLABELS_LS_EXPORT_CONCURRENCY`` | ``2`` | Label Studio export requests a worker keeps in flight while it reads a project (1 to 16); more than 2 helps only a Label Studio served by several processes (its Docker image, or the one ``customlabels up`` starts) |
| ``CUSTOMLABELS_WORKER_NICE`` | ``10`` | CPU priority (nice value) the worker lowers itself to as it starts (0 to 19; 0 leaves it as started): where it shares the machine with Label Studio, the annotators' saves come first and the manifests lag only while the CPU is busy |
| ``CUSTOMLABELS_MANIFEST_MEMORY_MIB`` | ``128`` | MiB of manifests a worker keeps as it last wrote them, each up to a quarter of this (0: none): a change to a kept manifest fills its uploaded part from memory instead of downloading the unchanged bytes around the change (about 5 MiB a publish) |
| ``CUSTOMLABELS_DUPLICATE_DISTANCE`` | ``8`` | how many of an image's 64 perceptual-hash bits may differ from another's for the two to be near duplicates (0 to 32; 8 finds resized, re-encoded, cropped-by-5% and brightened copies) |
| ``CUSTOMLABELS_MAX_WEBHOOK_BYTES`` | ``10485760`` | largest webhook body accepted (413 above), bytes (1024 or more) |
| ``CUSTOMLABELS_QUEUE`` | ``customlabels`` | RQ queue name |
| ``CUSTOMLABELS_SERVICE_URL`` | ``http://127.0.0.1:5000`` | where Label Studio reaches this service (webhooks) |
| ``CUSTOMLABELS_API_ACCESS_KEY_ID`` | empty = endpoint refuses all | key id clients of the Rekognition-compatible endpoint sign with (SigV4) |
| ``CUSTOMLABELS_API_SECRET_ACCESS_KEY`` | empty = endpoint refuses all | its secret (16+ characters; set both or neither) |
| ``CUSTOMLABELS_API_ACCOUNT_ID`` | ``123456789012`` | the 12-digit account id in the endpoint's ARNs |
| ``CUSTOMLABELS_ALLOWED_BUCKETS`` | empty = ``CUSTOMLABELS_BUCKET`` | comma-separated buckets the service may read imports from (the console, the REST and Rekognition-compatible endpoints); local paths and other schemes are always refused there |
| ``CUSTOMLABELS_SERVICE_API_KEY`` | empty = none | a bearer token for scripts that acts for every project (32+ characters); people send their own Label Studio token instead |

A blank value counts as unset (the default applies), except for ``CUSTOMLABELS_PREFIX``, where it means
no prefix. AWS credentials come from boto3's usual chain (``AWS_ACCESS_KEY_ID`` ...).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from types import MappingProxyType
from typing import Any
from urllib.parse import urlparse

from sync_service.errors import ConfigError

SECRET_HEADER = "X-Customlabels-Secret"
_PREFIX_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
MAX_PREFIX = 512  # S3 keys have 1,024 bytes: room for the project folder and the file names
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ACCESS_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # no '/', ',' or blanks: it sits in a SigV4 scope
_ACCOUNT_RE = re.compile(r"^[0-9]{12}$")
DEFAULT_ACCOUNT_ID = "123456789012"
_HTTP = ("http", "https")
_REDIS = ("redis", "rediss", "unix")
_MIN_SECRET = 16
_MIN_SERVICE_KEY = 32


# --- the checks that clean a raw value, or say what is wrong with it (never quoting it) -----------------


def _url_of(schemes: tuple[str, ...]) -> Callable[[str], str]:
    """A check: a URL of one of ``schemes``, returned without its trailing slash."""

    def check(value: str) -> str:
        want = f"must be a {' or '.join(schemes)} URL"
        try:
            parsed = urlparse(value)
            parsed.port  # noqa: B018 - parses the port: ValueError when it is not a number
        except ValueError:
            raise ValueError(f"{want}; this one does not parse") from None
        if parsed.scheme not in schemes or not parsed.netloc:
            # Never the value itself: it may hold a password, or be a secret pasted into the wrong variable.
            raise ValueError(f"{want}, got one with scheme {parsed.scheme[:10]!r}")
        return value.rstrip("/")

    return check


def _bucket_list(value: str) -> tuple[str, ...]:
    """Comma-separated bucket names -> a tuple of them, each a valid S3 bucket name."""
    names = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    bad = [name for name in names if not _BUCKET_RE.fullmatch(name)]
    if bad:
        raise ValueError(f"{bad[0][:80]!r} is not a valid S3 bucket name")
    return names


def _clean_prefix(value: str) -> str:
    """``value`` without the slashes around it, if it is a safe key prefix (see :func:`check_prefix`)."""
    prefix = value.strip().strip("/")
    if prefix and (
        not _PREFIX_RE.fullmatch(prefix) or {".", ".."} & set(prefix.split("/")) or len(prefix) > MAX_PREFIX
    ):
        raise ValueError(
            f"{prefix[:80]!r} may hold only letters, digits, . _ - and / (no . or .. segments, "
            f"at most {MAX_PREFIX} characters)"
        )
    return prefix


def check_prefix(value: str, variable: str = "CUSTOMLABELS_PREFIX") -> str:
    """``value`` without the slashes around it, if it is a safe key prefix: segments of letters, digits,
    ``. _ -``, none of them ``.`` or ``..``, at most :data:`MAX_PREFIX` characters; else a
    :class:`ConfigError` naming ``variable`` (the setting, or the command-line option)."""
    try:
        return _clean_prefix(value)
    except ValueError as error:
        raise ConfigError(variable, str(error)) from None


# --- the declarations ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Variable:
    """How one :class:`Settings` field is read and documented (plain data: environs is imported only
    when settings are read, see :mod:`sync_service.envreader`, which takes it as its ``Rule``).

    ``parser``: ``str``, ``int`` or ``float``; ``check`` cleans a string or raises ``ValueError``;
    ``low``/``high`` bound a number; ``pattern`` (with ``pattern_error``) and ``min_length`` constrain a
    string. ``shown`` is the table's default column when it is not the default itself; ``example`` the
    value the local stack and ``docker/.env.example`` use for a required setting; ``blank_is_value``
    makes a blank value a value rather than unset.
    """

    name: str
    meaning: str
    parser: str = "str"
    check: Callable[[str], Any] | None = None
    low: float | None = None
    high: float | None = None
    pattern: re.Pattern[str] | None = None
    pattern_error: str = ""
    min_length: int | None = None
    shown: str = ""
    example: str | None = None
    blank_is_value: bool = False


def _var(name: str, meaning: str, **how: Any) -> Mapping[str, Variable]:
    """A field's metadata declaring its variable (``how``: the other fields of :class:`Variable`)."""
    return MappingProxyType({"variable": Variable(name, meaning, **how)})


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything the service and its workers need to know about their surroundings.

    Each field declares its environment variable in its metadata (:class:`Variable`); a field without a
    default is a required setting.
    """

    ls_url: str = field(
        default="http://127.0.0.1:8080",
        metadata=_var("CUSTOMLABELS_LS_URL", "Label Studio's base URL", check=_url_of(_HTTP)),
    )
    ls_api_key: str = field(
        metadata=_var(
            "CUSTOMLABELS_LS_API_KEY", "Label Studio API token (legacy token or personal access token)"
        )
    )
    redis_url: str = field(
        default="redis://127.0.0.1:6379/0",
        metadata=_var(
            "CUSTOMLABELS_REDIS_URL",
            "Redis for queues, locks and caches (no data: losing it loses nothing)",
            check=_url_of(_REDIS),
        ),
    )
    s3_endpoint: str | None = field(
        default=None,
        metadata=_var(
            "CUSTOMLABELS_S3_ENDPOINT",
            "S3 endpoint URL (MinIO, s3rver, moto)",
            shown="empty = AWS",
            check=_url_of(_HTTP),
        ),
    )
    s3_region: str = field(default="us-east-1", metadata=_var("CUSTOMLABELS_S3_REGION", "S3 region"))
    bucket: str = field(
        metadata=_var(
            "CUSTOMLABELS_BUCKET",
            "bucket of the projects' manifests and images",
            example="customlabels",
            pattern=_BUCKET_RE,
            pattern_error="{input!r} is not a valid S3 bucket name",
        )
    )
    prefix: str = field(
        default="customlabels",
        metadata=_var(
            "CUSTOMLABELS_PREFIX",
            "key prefix of all projects in the bucket (empty: none)",
            blank_is_value=True,
            check=_clean_prefix,
        ),
    )
    webhook_secret: str = field(
        metadata=_var(
            "CUSTOMLABELS_WEBHOOK_SECRET",
            f"shared secret Label Studio sends in ``{SECRET_HEADER}`` ({_MIN_SECRET}+ characters)",
            min_length=_MIN_SECRET,
        )
    )
    debounce_seconds: float = field(
        default=0.25,
        metadata=_var(
            "CUSTOMLABELS_DEBOUNCE_SECONDS",
            "how long a publish waits after the first event it will take, so that a burst is published "
            "once (events that came in during the previous publish have waited already and are taken at "
            "once)",
            parser="float",
            low=0.0,
        ),
    )
    reconcile_seconds: float = field(
        default=300.0,
        metadata=_var(
            "CUSTOMLABELS_RECONCILE_SECONDS",
            "period of the reconcile of every project, seconds (1 or more): the tasks whose "
            "``updated_at`` moved, tasks deleted without their webhook, the project's webhook",
            parser="float",
            low=1.0,
        ),
    )
    full_reconcile_seconds: float = field(
        default=86400.0,
        metadata=_var(
            "CUSTOMLABELS_FULL_RECONCILE_SECONDS",
            "period of the full reconcile (every task read again, every manifest written), seconds (60 or "
            "more); also after Redis was lost, on a label config change, on ``project resync`` and once "
            "Label Studio is back after a job found it away",
            parser="float",
            low=60.0,
        ),
    )
    ls_export_concurrency: int = field(
        default=2,
        metadata=_var(
            "CUSTOMLABELS_LS_EXPORT_CONCURRENCY",
            "Label Studio export requests a worker keeps in flight while it reads a project (1 to 16); "
            "more than 2 helps only a Label Studio served by several processes (its Docker image, or "
            "the one ``customlabels up`` starts)",
            parser="int",
            low=1,
            high=16,
        ),
    )
    worker_nice: int = field(
        default=10,
        metadata=_var(
            "CUSTOMLABELS_WORKER_NICE",
            "CPU priority (nice value) the worker lowers itself to as it starts (0 to 19; 0 leaves it as "
            "started): where it shares the machine with Label Studio, the annotators' saves come first and "
            "the manifests lag only while the CPU is busy",
            parser="int",
            low=0,
            high=19,
        ),
    )
    manifest_memory_mib: int = field(
        default=128,
        metadata=_var(
            "CUSTOMLABELS_MANIFEST_MEMORY_MIB",
            "MiB of manifests a worker keeps as it last wrote them, each up to a quarter of this (0: "
            "none): a change to a kept manifest fills its uploaded part from memory instead of "
            "downloading the unchanged bytes around the change (about 5 MiB a publish)",
            parser="int",
            low=0,
            high=65536,
        ),
    )
    duplicate_distance: int = field(
        default=8,
        metadata=_var(
            "CUSTOMLABELS_DUPLICATE_DISTANCE",
            "how many of an image's 64 perceptual-hash bits may differ from another's for the two to be "
            "near duplicates (0 to 32; 8 finds resized, re-encoded, cropped-by-5% and brightened copies)",
            parser="int",
            low=0,
            high=32,
        ),
    )
    max_webhook_bytes: int = field(
        default=10 * 1024 * 1024,
        metadata=_var(
            "CUSTOMLABELS_MAX_WEBHOOK_BYTES",
            "largest webhook body accepted (413 above), bytes (1024 or more)",
            parser="int",
            low=1024,
        ),
    )
    queue: str = field(default="customlabels", metadata=_var("CUSTOMLABELS_QUEUE", "RQ queue name"))
    service_url: str = field(
        default="http://127.0.0.1:5000",
        metadata=_var(
            "CUSTOMLABELS_SERVICE_URL",
            "where Label Studio reaches this service (webhooks)",
            check=_url_of(_HTTP),
        ),
    )
    # The Rekognition-compatible endpoint: the one key pair it accepts (None: it refuses every request).
    api_access_key_id: str | None = field(
        default=None,
        metadata=_var(
            "CUSTOMLABELS_API_ACCESS_KEY_ID",
            "key id clients of the Rekognition-compatible endpoint sign with (SigV4)",
            shown="empty = endpoint refuses all",
            pattern=_ACCESS_KEY_RE,
            pattern_error="may hold only letters, digits, _ and - (1..128)",
        ),
    )
    api_secret_access_key: str | None = field(
        default=None,
        metadata=_var(
            "CUSTOMLABELS_API_SECRET_ACCESS_KEY",
            f"its secret ({_MIN_SECRET}+ characters; set both or neither)",
            shown="empty = endpoint refuses all",
            min_length=_MIN_SECRET,
        ),
    )
    api_account_id: str = field(
        default=DEFAULT_ACCOUNT_ID,
        metadata=_var(
            "CUSTOMLABELS_API_ACCOUNT_ID",
            "the 12-digit account id in the endpoint's ARNs",
            pattern=_ACCOUNT_RE,
            pattern_error="must be 12 digits, got {input!r}",
        ),
    )

    allowed_buckets: tuple[str, ...] = field(
        default=(),
        metadata=_var(
            "CUSTOMLABELS_ALLOWED_BUCKETS",
            "comma-separated buckets the service may read imports from (the console, the REST and "
            "Rekognition-compatible endpoints); local paths and other schemes are always refused there",
            shown="empty = ``CUSTOMLABELS_BUCKET``",
            check=_bucket_list,
        ),
    )
    service_api_key: str | None = field(
        default=None,
        metadata=_var(
            "CUSTOMLABELS_SERVICE_API_KEY",
            f"a bearer token for scripts that acts for every project ({_MIN_SERVICE_KEY}+ characters); "
            "people send their own Label Studio token instead",
            shown="empty = none",
            min_length=_MIN_SERVICE_KEY,
        ),
    )

    @property
    def source_buckets(self) -> tuple[str, ...]:
        """The buckets imports through the service may read: :attr:`allowed_buckets`, else :attr:`bucket`."""
        return self.allowed_buckets or (self.bucket,)

    def __repr__(self) -> str:
        # Secrets never reach logs or error messages, not even through a repr.
        return (
            f"Settings(ls_url={self.ls_url!r}, redis_url={redact_url(self.redis_url)!r}, "
            f"s3_endpoint={self.s3_endpoint!r}, bucket={self.bucket!r}, prefix={self.prefix!r})"
        )


def declarations() -> Iterator[tuple[Field[Any], Variable]]:
    """Each :class:`Settings` field with its :class:`Variable`, in the order of the table."""
    for each in fields(Settings):
        yield each, each.metadata["variable"]


def redact_url(url: str) -> str:
    """``url`` with its password (if any) shown as ``***``: what may be printed or logged."""
    parsed = urlparse(url)
    if parsed.password:
        return url.replace(f":{parsed.password}@", ":***@")
    return url


# --- the defaults other code builds settings from --------------------------------------------------------


def _default(attribute: str) -> Any:
    """The declared default of a setting, else the example value of a required one."""
    for each, variable in declarations():
        if each.name == attribute:
            return variable.example if each.default is MISSING else each.default
    raise KeyError(attribute)


@dataclass(frozen=True, slots=True)
class Defaults:
    """The documented values code uses when it makes settings rather than reads them (the local stack's
    plan, ``docker/.env.example``): each setting's default, and the bucket the local stack makes."""

    ls_url: str
    service_url: str
    redis_url: str
    s3_region: str
    bucket: str
    prefix: str

    @property
    def ls_port(self) -> int:
        """The port of :attr:`ls_url`."""
        return urlparse(self.ls_url).port or 80

    @property
    def service_port(self) -> int:
        """The port of :attr:`service_url`."""
        return urlparse(self.service_url).port or 80


DEFAULTS = Defaults(**{each.name: _default(each.name) for each in fields(Defaults)})


# --- reading --------------------------------------------------------------------------------------------


def _check_key_pair(key_id: str | None, secret: str | None) -> None:
    if key_id is None and secret is not None:
        raise ConfigError("CUSTOMLABELS_API_ACCESS_KEY_ID", "is required when the secret access key is set")
    if secret is None and key_id is not None:
        raise ConfigError("CUSTOMLABELS_API_SECRET_ACCESS_KEY", "is required when the access key id is set")


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read :class:`Settings` from ``env`` (default ``os.environ``); raise :class:`ConfigError` naming a bad one."""
    from sync_service import envreader  # noqa: PLC0415 - environs and marshmallow: ~70 ms of every command's start-up

    declared = list(declarations())
    values = envreader.read(
        os.environ if env is None else env,
        (
            (variable, envreader.REQUIRED if each.default is MISSING else each.default)
            for each, variable in declared
        ),
    )
    settings = {each.name: values[variable.name] for each, variable in declared}
    _check_key_pair(settings["api_access_key_id"], settings["api_secret_access_key"])
    return Settings(**settings)
