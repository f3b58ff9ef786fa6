"""Images the project keeps itself: content-addressed objects under ``<project>/images/``.

Images that come from this computer (``customlabels dataset create --from-dir``) or from Label Studio's
own upload (tasks whose ``data.image`` is ``/data/upload/...``) are copied into the project's S3 folder,
so that every manifest line points at a real object. The key is the SHA-256 of the bytes: storing the
same image twice makes no second object, and a re-run finds what it stored before.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
from typing import Any
from urllib.parse import unquote, urlparse

from converters.imagemeta import image_meta_from_header
from sync_service.domain.projects import ProjectInfo, Projects
from sync_service.edges.labelstudio import LabelStudio
from sync_service.edges.s3 import Storage

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
UPLOAD_PATH = "/data/upload/"  # where Label Studio serves the files uploaded into it
_FORMAT_SUFFIX = {"jpeg": ".jpg", "png": ".png"}


def image_suffix(name: str, data: bytes) -> str:
    """The file suffix to store ``data`` under: the name's, when it is a JPEG/PNG one, else the format's."""
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if suffix in IMAGE_SUFFIXES:
        return suffix
    meta = image_meta_from_header(data[: 1 << 20])
    fmt = (meta.format or "").lower() if meta is not None else ""
    return _FORMAT_SUFFIX.get(fmt, ".jpg")


def store_image(storage: Storage, projects: Projects, info: ProjectInfo, data: bytes, suffix: str) -> str:
    """Store image bytes under the project's ``images/`` by content; return the object's ``s3://`` URL."""
    digest = hashlib.sha256(data).hexdigest()
    ext = suffix.lower() if suffix.lower() in IMAGE_SUFFIXES else ".jpg"
    key = projects.key(info, f"images/{digest[:2]}/{digest}{ext}")
    if not storage.exists(key):
        storage.put_bytes(key, data, content_type=mimetypes.guess_type(f"x{ext}")[0] or "image/jpeg")
    return f"s3://{storage.bucket}/{key}"


def is_upload_url(url: Any, ls_url: str) -> bool:
    """Whether a task's image URL is a file uploaded into Label Studio (``/data/upload/...``), given
    relative or absolute on Label Studio's own host."""
    if not isinstance(url, str):
        return False
    if url.startswith(UPLOAD_PATH):
        return True
    if not url[:8].lower().startswith(("http://", "https://")) or UPLOAD_PATH not in url:
        return False  # an s3:// image, most tasks: no URL parsing on a rebuild's every task
    parsed, own = urlparse(url), urlparse(ls_url)
    return (
        parsed.scheme in ("http", "https")
        and parsed.netloc == own.netloc
        and parsed.path.startswith(UPLOAD_PATH)
    )


def adopt_upload(
    task: dict[str, Any],
    *,
    ls: LabelStudio,
    storage: Storage,
    projects: Projects,
    info: ProjectInfo,
    image_key: str = "image",
) -> str | None:
    """Copy a Label-Studio-uploaded image of ``task`` into the project's S3 folder and point the task at it.

    The task's ``data`` is rewritten in Label Studio (``data.image`` -> the ``s3://`` URL; ``data.dataset``
    -> ``train`` when the task had none: Label Studio's upload cannot say which dataset) and in ``task``
    itself, so that the caller converts the task as it now is. Returns the new URL, or None when the task's
    image is not an upload. Task data changes send no webhook: the caller records the task as changed.
    """
    data = task.get("data")
    if not isinstance(data, dict):
        return None
    url = data.get(image_key)
    if not is_upload_url(url, ls.url):
        return None
    assert isinstance(url, str)
    body = ls.download(url)
    if body is None:
        log.warning("task %s: Label Studio no longer has %s; left as it is", task.get("id"), url)
        return None
    name = unquote(urlparse(url).path.rsplit("/", 1)[-1])
    ref = store_image(storage, projects, info, body, image_suffix(name, body))
    new_data = {**data, image_key: ref}
    if new_data.get("dataset") not in ("train", "test"):
        new_data["dataset"] = "train"
    ls.update_task_data(int(task["id"]), new_data)
    task["data"] = new_data
    log.info("task %s: uploaded image %s stored as %s", task.get("id"), url, ref)
    return ref
