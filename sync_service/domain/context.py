"""The connections a process holds for the domain's operations: Redis, S3, Label Studio, the registry."""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from sync_service.config import Settings
from sync_service.domain.projects import Projects
from sync_service.domain.publisher import Publisher
from sync_service.edges.labelstudio import LabelStudio
from sync_service.edges.s3 import Storage, client_for


@dataclass(slots=True)
class Context:
    """Connections a process (the service, a worker, the command line) holds for its operations."""

    settings: Settings
    redis: Redis
    storage: Storage
    ls: LabelStudio
    projects: Projects

    @property
    def publisher(self) -> Publisher:
        """A publisher over these connections."""
        return Publisher(
            self.redis,
            self.storage,
            self.ls,
            self.projects,
            debounce=self.settings.debounce_seconds,
            duplicate_distance=self.settings.duplicate_distance,
        )


def make_context(settings: Settings, *, redis: Redis | None = None) -> Context:
    """Open the connections for ``settings`` (Label Studio is contacted lazily on first use); ``redis``:
    a connection the process already holds, instead of a new one."""
    redis = redis if redis is not None else Redis.from_url(settings.redis_url)
    storage = Storage(
        client_for(settings), settings.bucket, recent_bytes=settings.manifest_memory_mib * 1024 * 1024
    )
    return Context(
        settings=settings,
        redis=redis,
        storage=storage,
        ls=LabelStudio(
            settings.ls_url,
            settings.ls_api_key,
            export_concurrency=settings.ls_export_concurrency,
        ),
        projects=Projects(redis, storage, settings.prefix),
    )
