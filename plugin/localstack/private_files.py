"""The home's private files, written mode 0600: the generated-once login (``secrets.json``: admin, API
token, webhook secret, the Rekognition-compatible endpoint's key pair) and Label Studio's settings
(``label-studio.env``, read at every start).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from plugin.localstack.layout import Layout

ADMIN_EMAIL = "admin@customlabels.local"

LS_ENV_DEFAULTS = {
    "SSRF_PROTECTION_ENABLED": "false",
    "USE_DEFAULT_BANNED_SUBNETS": "false",
    "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
    "LATEST_VERSION_CHECK": "false",
    "COLLECT_ANALYTICS": "false",
    "SENTRY_DSN": "",
    "FRONTEND_SENTRY_DSN": "",
}
"""What ``label-studio.env`` holds when first written. The SSRF settings let Label Studio call the
service's webhook and the store on loopback; the legacy token must be on when the organization is
first created; nothing calls out."""

_LS_ENV_HEADER = """\
# Settings of the Label Studio server that `customlabels up` starts, read at every start (KEY=VALUE).
# Label Studio reads LABEL_STUDIO_<X>, then HEARTEX_<X>, then plain <X>. `customlabels doctor` checks
# that loopback webhooks and a loopback S3 endpoint stay allowed (SSRF_PROTECTION_ENABLED=false or
# USE_DEFAULT_BANNED_SUBNETS=false). The admin login lives in secrets.json, not here.
"""


@dataclass(frozen=True)
class Secrets:
    """Generated at the first ``up`` of a home and kept: Label Studio keeps the first admin it made."""

    username: str
    password: str
    token: str
    webhook_secret: str
    api_access_key_id: str
    """The key id clients of the Rekognition-compatible endpoint sign with (SigV4)."""
    api_secret_access_key: str
    """Its secret."""

    def __repr__(self) -> str:
        return f"Secrets(username={self.username!r}, ...)"


def _api_key_pair() -> dict[str, str]:
    """A new key pair for the Rekognition-compatible endpoint, shaped like AWS's (20 and 40 characters)."""
    return {
        "api_access_key_id": "AKCL" + secrets.token_hex(8).upper(),
        "api_secret_access_key": secrets.token_urlsafe(30),
    }


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the start (never readable by others), atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def load_secrets(layout: Layout, *, create: bool) -> Secrets | None:
    """The home's secrets; made (mode 0600) when missing and ``create``; None when missing otherwise."""
    if layout.secrets.exists():
        raw = json.loads(layout.secrets.read_text())
        if "api_access_key_id" not in raw and create:  # a home from before the endpoint had a key pair
            raw.update(_api_key_pair())
            write_private(layout.secrets, json.dumps(raw, indent=2) + "\n")
        return Secrets(
            username=str(raw["username"]),
            password=str(raw["password"]),
            token=str(raw["token"]),
            webhook_secret=str(raw["webhook_secret"]),
            api_access_key_id=str(raw.get("api_access_key_id", "")),
            api_secret_access_key=str(raw.get("api_secret_access_key", "")),
        )
    if not create:
        return None
    body = {
        "username": ADMIN_EMAIL,
        "password": secrets.token_urlsafe(12),
        "token": secrets.token_hex(20),  # 40 characters: the most a legacy token may have
        "webhook_secret": secrets.token_urlsafe(32),
        **_api_key_pair(),
    }
    write_private(layout.secrets, json.dumps(body, indent=2) + "\n")
    return Secrets(**body)


def parse_env_file(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, blank lines, optional ``export`` and quotes) -> a dict."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.strip()] = value
    return out


def load_ls_env(layout: Layout, *, create: bool) -> dict[str, str] | None:
    """Label Studio's settings from ``label-studio.env`` (written with the defaults when missing)."""
    if not layout.ls_env.exists():
        if not create:
            return None
        body = "".join(f"{key}={value}\n" for key, value in LS_ENV_DEFAULTS.items())
        write_private(layout.ls_env, _LS_ENV_HEADER + body)
    return parse_env_file(layout.ls_env.read_text())


def ssrf_allows_loopback(settings: Mapping[str, str]) -> bool:
    """Whether Label Studio with these settings may call loopback URLs (webhooks, a local S3)."""

    def off(name: str) -> bool:
        return settings.get(name, "").strip().lower() in ("false", "0", "no", "off")

    return off("SSRF_PROTECTION_ENABLED") or off("USE_DEFAULT_BANNED_SUBNETS")
