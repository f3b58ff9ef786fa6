"""People in the test session's Label Studio, made and changed through its own Django (in its own
environment, as an administrator would with ``label-studio shell``): a member of the admin's
organization, a person of another organization, a deactivated account."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from dataclasses import dataclass

from plugin.localstack.label_studio import _label_studio_package, ensure_label_studio_env
from tests.realparts import LabelStudioServer

_SCRIPT = """
import json, sys
import django
django.setup()
from django.db import transaction
from organizations.models import Organization
from rest_framework.authtoken.models import Token
from users.models import User
order = json.loads(sys.argv[1])
with transaction.atomic():
    user = User.objects.filter(email=order["email"]).first()
    if user is None:
        user = User.objects.create_user(email=order["email"], password=order["password"])
        user.username = order["email"].split("@")[0]
        user.save()
        if order["organization"] == "own":
            org = Organization.create_organization(created_by=user, title=order["email"])
        else:
            org = Organization.objects.order_by("id").first()
            org.add_user(user)
        org.jwt.legacy_api_tokens_enabled = True  # so that the test can send a legacy token
        org.jwt.save()
        user.active_organization = org
        user.save(update_fields=["active_organization"])
    if "active" in order:
        user.is_active = order["active"]
        user.save(update_fields=["is_active"])
    token, _ = Token.objects.get_or_create(user=user)
print(json.dumps({"id": user.id, "token": token.key}))
"""


@dataclass(frozen=True)
class Person:
    """A Label Studio account: its id, email, password and legacy token."""

    id: int
    email: str
    password: str
    token: str


def _run(server: LabelStudioServer, order: dict[str, object]) -> dict[str, object]:
    env_dir = ensure_label_studio_env()
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "DJANGO_SETTINGS_MODULE": "core.settings.label_studio",
        "PYTHONPATH": str(_label_studio_package(env_dir)),
        "LABEL_STUDIO_BASE_DATA_DIR": str(server.process.data_dir),
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
    }
    done = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", _SCRIPT, json.dumps(order)],
        env=env, cwd=str(server.process.data_dir), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def make_person(server: LabelStudioServer, *, organization: str) -> Person:
    """A new account: ``organization`` ``"admin"`` (a member of the admin's) or ``"own"`` (its own)."""
    email = f"p{secrets.token_hex(4)}@customlabels.test"
    password = secrets.token_urlsafe(12)
    made = _run(server, {"email": email, "password": password, "organization": organization})
    return Person(int(str(made["id"])), email, password, str(made["token"]))


def set_active(server: LabelStudioServer, person: Person, active: bool) -> None:
    """Deactivate (or activate again) an account, as Label Studio's admin pages do."""
    _run(
        server,
        {"email": person.email, "password": person.password, "organization": "admin", "active": active},
    )
