"""Projects of ours: a Label Studio project id, its S3 location and its split policy.

``<prefix>/<slug>/project.json`` in S3 is the record (written by ``customlabels project create``); Redis
keeps a copy per Label Studio id (``cl:projects``) so that a webhook finds its project without a listing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from redis import Redis

from sync_service.edges.locks import RenewingLock
from sync_service.edges.s3 import Storage
from sync_service.edges.state import PROJECTS_KEY

_SLUG_DROP = re.compile(r"[^a-z0-9]+")
MAX_SLUG = 60


def slugify(title: str) -> str:
    """The S3 folder name of a project title: lower-case ASCII letters, digits and dashes, at most 60.

    Slashes, dots and control characters cannot survive, so a title can never name a key outside the
    project's folder.
    """
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = _SLUG_DROP.sub("-", ascii_title.lower()).strip("-")[:MAX_SLUG].strip("-")
    return slug or "project"


@dataclass(frozen=True, slots=True)
class ProjectInfo:
    """What ``project.json`` says of one project."""

    label_studio_project_id: int
    title: str
    slug: str
    test_fraction: float = 0.2
    seed: int = 0
    job_name: str | None = None
    labels: dict[str, list[str]] | None = None  # per control, as the last published config had them
    name: str = ""  # the Rekognition ProjectName (in ARNs); the slug when empty
    created: float = 0.0  # Unix time of creation
    # "train"/"test" -> the dataset's record (status fields); None: a record from before datasets, both.
    datasets: dict[str, dict[str, Any]] | None = None

    def has_dataset(self, dataset: str) -> bool:
        """Whether the project has this dataset."""
        return self.datasets is None or dataset in self.datasets

    @property
    def project_name(self) -> str:
        """The name in the project's ARN."""
        return self.name or self.slug

    def to_json(self) -> bytes:
        """``project.json``'s bytes."""
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, raw: bytes | str) -> ProjectInfo:
        """Read ``project.json``; unknown keys are ignored."""
        obj: dict[str, Any] = orjson.loads(raw)
        return cls(
            label_studio_project_id=int(obj["label_studio_project_id"]),
            title=str(obj["title"]),
            slug=str(obj["slug"]),
            test_fraction=float(obj.get("test_fraction", 0.2)),
            seed=int(obj.get("seed", 0)),
            job_name=obj.get("job_name"),
            labels=obj.get("labels"),
            name=str(obj.get("name") or ""),
            created=float(obj.get("created") or 0.0),
            datasets=obj.get("datasets"),
        )


class Projects:
    """Find and record projects (S3 is the record; Redis the cache)."""

    def __init__(self, redis: Redis, storage: Storage, prefix: str) -> None:
        self.redis = redis
        self.storage = storage
        self.prefix = prefix

    def key(self, info: ProjectInfo, name: str) -> str:
        """The S3 key of ``name`` (``train.manifest``, ``validation/...``) in the project's folder."""
        base = f"{self.prefix}/{info.slug}" if self.prefix else info.slug
        return f"{base}/{name}"

    def save(self, info: ProjectInfo) -> None:
        """Write ``project.json`` and cache it."""
        self.storage.put_bytes(
            self.key(info, "project.json"), info.to_json(), content_type="application/json"
        )
        self.redis.hset(PROJECTS_KEY, str(info.label_studio_project_id), info.to_json())

    def find(self, project_id: int) -> ProjectInfo | None:
        """The project with this Label Studio id, from the cache or else from S3; None if not ours."""
        raw = self.redis.hget(PROJECTS_KEY, str(project_id))
        if raw is not None:
            return ProjectInfo.from_json(raw)
        for info in self.scan():
            if info.label_studio_project_id == project_id:
                return info
        return None

    def find_by_slug(self, slug: str) -> ProjectInfo | None:
        """The project in folder ``slug``, read from S3."""
        base = f"{self.prefix}/{slug}" if self.prefix else slug
        raw = self.storage.get_bytes(f"{base}/project.json")
        return ProjectInfo.from_json(raw) if raw is not None else None

    def scan(self) -> list[ProjectInfo]:
        """Every project under the prefix (read from S3), cached in Redis as found."""
        base = f"{self.prefix}/" if self.prefix else ""
        found = []
        for folder in self.storage.list_keys(base, delimiter="/"):
            raw = self.storage.get_bytes(f"{folder}project.json")
            if raw is None:
                continue
            info = ProjectInfo.from_json(raw)
            self.redis.hset(PROJECTS_KEY, str(info.label_studio_project_id), raw)
            found.append(info)
        return found

    def forget(self, project_id: int) -> None:
        """Drop the cached record (the Label Studio project is gone)."""
        self.redis.hdel(PROJECTS_KEY, str(project_id))

    def named(self, name: str) -> list[ProjectInfo]:
        """The projects whose Rekognition name (``project_name``) is ``name``: from the cache, else S3."""
        cached = [ProjectInfo.from_json(raw) for raw in self.redis.hvals(PROJECTS_KEY)]
        found = [info for info in cached if info.project_name == name]
        return found or [info for info in self.scan() if info.project_name == name]

    def lock(self, project_id: int, *, seconds: float = 30.0) -> RenewingLock:
        """A lock to hold across a read-modify-write of the project's record (``project.json``).

        Waits up to ``seconds`` for it (then :class:`~sync_service.edges.locks.LockLost`); renewed while
        held, it frees itself ``seconds`` after a holder died.
        """
        return RenewingLock(self.redis, f"cl:p:{project_id}:record-lock", ttl=seconds, wait=seconds)
