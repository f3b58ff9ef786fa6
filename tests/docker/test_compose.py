"""``docker/docker-compose.yml`` checked statically (no Docker engine runs here) against the code.

The file is parsed with PyYAML, ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}`` are interpolated
with ``docker/.env.example`` as Compose would, and then: every setting ``sync_service/config.py`` reads is
set for the service and the workers and loads; the URLs agree with the services they name (Label Studio,
the service's own port, the opt-in local store's, Redis); Label Studio runs on PostgreSQL with the
POSTGRE_* spelling and the settings our webhooks and S3 need; every image is pinned and none is MinIO's
(archived, unpatched); only the ports a browser opens are published, on ``PUBLISH_ADDRESS`` (this
machine by default); every long-running service has a health check; and the service and workers wait
for what they need.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from plugin.localstack.private_files import parse_env_file
from sync_service.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker" / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "docker" / ".env.example"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
CONFIG = ROOT / "sync_service" / "config.py"
OURS = ("service", "worker")
ONE_SHOT = {"garage-init"}
LOCAL_STORE = {"CUSTOMLABELS_S3_ENDPOINT": "http://s3.localhost:3900"}
"""What docker/.env says to use the opt-in local store (``--profile local-s3``)."""
BROWSER_PORTS = {"label-studio": [8080], "service": [5000], "garage": [3900]}
"""The ports a browser opens: Label Studio, the console, the local store's presigned image URLs."""
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$\$")


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable interpolation over a parsed document (``$$`` is a literal ``$``)."""
    if isinstance(value, dict):
        return {interpolate(k, env): interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        current = env.get(name)
        if op in (":-", "-"):
            return current if current or (op == "-" and current is not None) else arg
        if op in (":?", "?"):
            if not current:
                raise AssertionError(f"${{{name}}} is required: {arg}")
            return current
        return current or ""

    return _VAR.sub(one, value)


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return parse_env_file(ENV_EXAMPLE.read_text())


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any], example_env: dict[str, str]) -> dict[str, Any]:
    doc = interpolate(raw, example_env)
    assert isinstance(doc, dict)
    return doc


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def config_variables() -> set[str]:
    """Every ``CUSTOMLABELS_*`` name ``sync_service/config.py`` mentions (its table and its reads)."""
    return set(re.findall(r"CUSTOMLABELS_[A-Z0-9_]+", CONFIG.read_text()))


def required_variables() -> set[str]:
    """The names the config's table marks ``(required)``."""
    return set(re.findall(r"``(CUSTOMLABELS_[A-Z0-9_]+)``\s*\|\s*\(required\)", CONFIG.read_text()))


def hostport(url: str) -> tuple[str, int]:
    parsed = urlparse(url)
    assert parsed.hostname and parsed.port, url
    return parsed.hostname, parsed.port


def names_of(compose: dict[str, Any], service: str) -> set[str]:
    """The host names a service answers to on the default network: its name and its aliases."""
    networks = compose["services"][service].get("networks") or {}
    aliases = set()
    if isinstance(networks, dict):
        for net in networks.values():
            aliases |= set((net or {}).get("aliases") or ())
    return {service, *aliases}


def option(command: list[str], flag: str) -> str | None:
    return command[command.index(flag) + 1] if flag in command else None


def test_the_example_env_sets_every_variable_the_file_requires(raw: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    required = {m.group(1) for m in _VAR.finditer(text) if m.group(1) and m.group(2) in (":?", "?")}
    assert required, "no required variables found"
    env = parse_env_file(ENV_EXAMPLE.read_text())
    assert {name for name in required if not env.get(name)} == set()
    assert 6 <= len(env["LABEL_STUDIO_USER_TOKEN"]) <= 40
    # and a missing one stops Compose with the message naming it
    with pytest.raises(AssertionError, match="CUSTOMLABELS_WEBHOOK_SECRET"):
        interpolate(raw, {k: v for k, v in env.items() if k != "CUSTOMLABELS_WEBHOOK_SECRET"})


def test_service_and_workers_get_every_setting_of_the_config(compose: dict[str, Any]) -> None:
    variables = config_variables()
    assert {"CUSTOMLABELS_LS_URL", "CUSTOMLABELS_BUCKET", "CUSTOMLABELS_WEBHOOK_SECRET"} <= variables
    assert required_variables() >= {"CUSTOMLABELS_LS_API_KEY", "CUSTOMLABELS_BUCKET"}
    for name in OURS:
        env = env_of(compose["services"][name])
        assert sorted(variables - set(env)) == [], f"{name} lacks settings of sync_service/config.py"
        assert all(env[v] for v in required_variables()), name
        settings = load_settings(env)  # every value is valid, as the service would read it
        assert settings.s3_endpoint is None and settings.bucket  # Amazon S3 unless docker/.env says
        assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]
    assert env_of(compose["services"]["service"]) == env_of(compose["services"]["worker"])


def test_urls_name_the_services_that_answer_them(raw: dict[str, Any], example_env: dict[str, str]) -> None:
    compose = interpolate(raw, {**example_env, **LOCAL_STORE})
    services = compose["services"]
    env = env_of(services["service"])
    # Label Studio: the official image serves on 8080.
    assert hostport(env["CUSTOMLABELS_LS_URL"]) == ("label-studio", 8080)
    # The webhook URL Label Studio reaches is the service's own address and the port it binds.
    command = services["service"]["command"]
    assert command[:2] == ["customlabels", "serve"] and option(command, "--host") == "0.0.0.0"
    host, port = hostport(env["CUSTOMLABELS_SERVICE_URL"])
    assert host in names_of(compose, "service") and port == int(option(command, "--port") or 0)
    # The local store is Garage's S3 API port, under a name it answers to inside the network and
    # published as is; its config binds that port and signs for the service's region.
    host, port = hostport(env["CUSTOMLABELS_S3_ENDPOINT"])
    garage = services["garage"]
    assert host in names_of(compose, "garage")
    toml = (ROOT / "docker" / "garage.toml").read_text()
    assert f'api_bind_addr = "[::]:{port}"' in toml and f'"{env["CUSTOMLABELS_S3_REGION"]}"' in toml
    assert f"127.0.0.1:{port}:{port}" in [str(p) for p in garage["ports"]]
    assert garage["profiles"] == services["garage-init"]["profiles"] == ["local-s3"]
    # Redis
    assert hostport(env["CUSTOMLABELS_REDIS_URL"]) == ("redis", 6379)
    # The key pair garage-init imports is the service's, and the bucket it makes is the one it uses.
    init = env_of(services["garage-init"])
    assert (init["AWS_ACCESS_KEY_ID"], init["AWS_SECRET_ACCESS_KEY"]) == (
        env["AWS_ACCESS_KEY_ID"],
        env["AWS_SECRET_ACCESS_KEY"],
    )
    assert init["CUSTOMLABELS_BUCKET"] == env["CUSTOMLABELS_BUCKET"]
    # Published ports of the UI and the service
    assert "127.0.0.1:8080:8080" in services["label-studio"]["ports"]
    assert "127.0.0.1:5000:5000" in services["service"]["ports"]


def test_only_the_ports_a_browser_opens_are_published_and_on_this_machine_by_default(
    raw: dict[str, Any], compose: dict[str, Any], example_env: dict[str, str]
) -> None:
    published = {
        name: [str(p) for p in service.get("ports") or ()] for name, service in compose["services"].items()
    }
    assert {
        name: [int(p.rsplit(":", 1)[1]) for p in ports] for name, ports in published.items() if ports
    } == BROWSER_PORTS
    assert all(p.startswith("127.0.0.1:") for ports in published.values() for p in ports), published
    for name, service in compose["services"].items():
        assert not service.get("expose") and service.get("network_mode") != "host", name
    # The address is the operator's to choose (a proxy on another interface).
    moved = interpolate(raw, {**example_env, "PUBLISH_ADDRESS": "10.0.0.5"})
    assert moved["services"]["service"]["ports"] == ["10.0.0.5:5000:5000"]
    assert not [p for p in published["garage"] if p.endswith((":3901", ":3903"))]  # RPC, admin


def test_no_archived_minio_image_and_the_store_is_opt_in(compose: dict[str, Any]) -> None:
    images = {name: service["image"] for name, service in compose["services"].items()}
    assert not [name for name, image in images.items() if "minio" in image.lower()], images
    default = {name for name, service in compose["services"].items() if not service.get("profiles")}
    assert default == {"postgres", "redis", "label-studio", "service", "worker"}
    waits = compose["services"]["service"]["depends_on"]["garage-init"]
    assert waits == {"condition": "service_completed_successfully", "required": False}


def test_label_studio_runs_on_postgres_with_what_our_webhooks_and_s3_need(compose: dict[str, Any]) -> None:
    services = compose["services"]
    ls = env_of(services["label-studio"])
    pg = env_of(services["postgres"])
    assert services["label-studio"]["image"] == "heartexlabs/label-studio:1.23.2"
    assert ls["DJANGO_DB"] == "default"
    assert ls["POSTGRE_HOST"] == "postgres" and ls["POSTGRE_PORT"] == "5432"
    assert (ls["POSTGRE_NAME"], ls["POSTGRE_USER"], ls["POSTGRE_PASSWORD"]) == (
        pg["POSTGRES_DB"], pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"]
    )  # fmt: skip
    assert not [k for k in ls if k.startswith("POSTGRES_")], "Label Studio spells them POSTGRE_*"
    assert ls["SSRF_PROTECTION_ENABLED"] == "false" or ls["USE_DEFAULT_BANNED_SUBNETS"] == "false"
    assert ls["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    assert ls["LABEL_STUDIO_USER_TOKEN"] == env_of(services["service"])["CUSTOMLABELS_LS_API_KEY"]
    assert ls["LATEST_VERSION_CHECK"] == "false"
    assert "/label-studio/data" in " ".join(services["label-studio"]["volumes"])


def test_every_image_is_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image, f"{name} has no image"
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and not tag.startswith(("latest", "stable")), f"{name}: {image} is not pinned"
        assert re.search(r"\d", tag), f"{name}: {image} names no version"
    first = DOCKERFILE.read_text().split("FROM ", 1)[1].split()[0]
    assert ":" in first and "latest" not in first


def test_every_long_running_service_has_a_health_check_and_waits_for_what_it_needs(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no"
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"
        assert service.get("restart") == "unless-stopped", name

    def waits(name: str) -> dict[str, str]:
        return {k: v["condition"] for k, v in (services[name].get("depends_on") or {}).items()}

    assert waits("label-studio") == {"postgres": "service_healthy"}
    assert waits("service") == {
        "redis": "service_healthy",
        "garage-init": "service_completed_successfully",
        "label-studio": "service_healthy",
    }
    assert waits("garage-init") == {"garage": "service_healthy"}
    assert waits("worker") == {"service": "service_healthy"}
    assert services["worker"]["command"] == ["customlabels", "worker"]
    assert services["worker"]["image"] == services["service"]["image"]
    assert "/readyz" in " ".join(services["service"]["healthcheck"]["test"])


def test_the_dockerfile_installs_the_package_and_serves_on_all_interfaces() -> None:
    text = DOCKERFILE.read_text()
    for part in ("converters", "plugin", "sync_service", "pyproject.toml"):
        assert f"COPY {part}" in text
    assert "pip install ." in text and "USER customlabels" in text
    assert 'CMD ["customlabels", "serve", "--host", "0.0.0.0", "--port", "5000"]' in text
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert {"!converters/", "!plugin/", "!sync_service/", "!pyproject.toml"} <= set(ignore)
