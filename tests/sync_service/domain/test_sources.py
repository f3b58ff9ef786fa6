"""Sources through the service are S3 only, in the allowed buckets: a local path, ``file://``, another
scheme or another bucket is refused naming the setting, and nothing is opened or listed."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from sync_service.config import Settings
from sync_service.domain.datasets import ON_THIS_MACHINE, DatasetError, Datasets, SourcePolicy
from sync_service.domain.projects import ProjectInfo

INFO = ProjectInfo(label_studio_project_id=1, title="Pets", slug="pets", datasets={"train": {}})
SETTINGS = Settings(ls_api_key="token", bucket="ours", webhook_secret="s" * 32)


class NoStorage:
    """An S3 edge that fails the test if anything is listed or read."""

    def __init__(self) -> None:
        self.client = self

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"S3 was touched: {name}")


def service_ops(settings: Settings = SETTINGS) -> Datasets:
    return Datasets(SimpleNamespace(settings=settings, storage=NoStorage()))  # type: ignore[arg-type]


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A FIFO: opening it for reading blocks until a writer comes, so a test that returns proves it was
    never opened (a watchdog writer unblocks a wrong open so the test fails instead of hanging)."""
    path = tmp_path / "manifest.fifo"
    os.mkfifo(path)
    return path


def _refused(call: Any, fifo: Path | None = None) -> DatasetError:
    opened: list[bool] = []
    if fifo is not None:

        def watchdog() -> None:  # only reached when the FIFO was opened for reading
            with open(fifo, "wb") as writer:
                opened.append(True)
                writer.write(b"")

        threading.Thread(target=watchdog, daemon=True).start()
    with pytest.raises(DatasetError) as caught:
        call()
    assert not opened, "the local file was opened"
    assert caught.value.exception == "AccessDeniedException"
    assert "CUSTOMLABELS_ALLOWED_BUCKETS" in str(caught.value)
    return caught.value


def test_a_local_manifest_is_refused_without_opening_it(fifo: Path) -> None:
    error = _refused(lambda: service_ops().from_manifest(INFO, "train", str(fifo)), fifo)
    assert "local path" in str(error) and "command line" in str(error)


def test_file_urls_and_other_schemes_are_refused(fifo: Path) -> None:
    _refused(lambda: service_ops().from_manifest(INFO, "train", f"file://{fifo}"), fifo)
    for location in ("http://example.com/m.manifest", "S3://ours/m.manifest", "gs://ours/m"):
        assert "location" in str(
            _refused(lambda loc=location: service_ops().from_manifest(INFO, "train", loc))
        )
    _refused(lambda: service_ops().from_s3(INFO, "train", "file:///etc/"))


def test_another_bucket_is_refused_without_listing_or_reading_it() -> None:
    error = _refused(lambda: service_ops().from_manifest(INFO, "train", "s3://theirs/m.manifest"))
    assert "'theirs'" in str(error) and "ours" in str(error)
    _refused(lambda: service_ops().from_s3(INFO, "train", "s3://theirs/images/"))
    _refused(lambda: service_ops().from_dir(INFO, "train", "/etc"))
    _refused(lambda: service_ops().from_csv(INFO, "train", "/etc/passwd", s3_prefix=None))
    _refused(lambda: service_ops().from_coco(INFO, "train", "/etc/passwd", s3_prefix="s3://ours/x/"))


def test_the_allow_list_replaces_the_default_bucket() -> None:
    policy = SourcePolicy.service(Settings(ls_api_key="t", bucket="ours", webhook_secret="s" * 32,
                                           allowed_buckets=("shared", "team")))  # fmt: skip
    policy.check("s3://team/x.manifest")
    policy.check("s3://shared/")
    with pytest.raises(DatasetError, match="CUSTOMLABELS_ALLOWED_BUCKETS"):
        policy.check("s3://ours/x.manifest")
    SourcePolicy.service(SETTINGS).check("s3://ours/images/")


def test_the_command_line_reads_local_files_and_any_bucket(tmp_path: Path) -> None:
    ON_THIS_MACHINE.check(str(tmp_path / "m.manifest"))
    ON_THIS_MACHINE.check("s3://anyone/m.manifest")
    ON_THIS_MACHINE.check("file:///anything")  # the user's own machine: their open() decides
