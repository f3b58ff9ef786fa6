"""Images the project keeps (content addressing, adoption of Label Studio uploads) and the predictions a
publish reads whole: with fakes of S3 and Label Studio."""

from __future__ import annotations

import hashlib
from typing import Any

from sync_service.domain.images import adopt_upload, image_suffix, is_upload_url, store_image
from sync_service.domain.projects import ProjectInfo
from sync_service.domain.publisher import PREDICTIONS_ONE_BY_ONE, Publisher, _needs_predictions
from tests.builders import choices
from tests.e2e.stack import jpeg

INFO = ProjectInfo(label_studio_project_id=7, title="Pets", slug="pets")
LS_URL = "http://127.0.0.1:8080"


class FakeStorage:
    bucket = "bkt"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts = 0

    def exists(self, key: str) -> bool:
        return key in self.objects

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "") -> None:
        self.objects[key] = data
        self.puts += 1


class FakeProjects:
    def key(self, info: ProjectInfo, name: str) -> str:
        return f"prefix/{info.slug}/{name}"


class FakeLabelStudio:
    url = LS_URL

    def __init__(
        self, files: dict[str, bytes] | None = None, predictions: list[dict[str, Any]] | None = None
    ):
        self.files = files or {}
        self.updated: dict[int, dict[str, Any]] = {}
        self.all_predictions = predictions or []
        self.prediction_calls: list[dict[str, Any]] = []

    def download(self, url: str) -> bytes | None:
        return self.files.get(url)

    def update_task_data(self, task_id: int, data: dict[str, Any]) -> None:
        self.updated[task_id] = data

    def update_annotation(self, annotation_id: int, result: list[Any]) -> dict[str, Any]:
        return {"id": annotation_id, "result": result, "updated_at": "2026-02-02T00:00:00.000001Z"}

    def update_prediction(self, prediction_id: int, result: list[Any]) -> dict[str, Any]:
        return {"id": prediction_id, "result": result, "updated_at": "2026-03-03T00:00:00.000001Z"}

    def predictions(self, *, task_id: int | None = None, project_id: int | None = None) -> Any:
        self.prediction_calls.append({"task": task_id, "project": project_id})
        return iter([p for p in self.all_predictions if task_id is None or p["task"] == task_id])


def test_store_image_is_content_addressed_and_writes_once() -> None:
    storage, data = FakeStorage(), b"\xff\xd8 some jpeg bytes"
    digest = hashlib.sha256(data).hexdigest()
    ref = store_image(storage, FakeProjects(), INFO, data, ".JPEG")  # type: ignore[arg-type]
    assert ref == f"s3://bkt/prefix/pets/images/{digest[:2]}/{digest}.jpeg"
    assert store_image(storage, FakeProjects(), INFO, data, ".jpeg") == ref  # type: ignore[arg-type]
    assert storage.puts == 1
    assert store_image(storage, FakeProjects(), INFO, data, ".gif").endswith(".jpg")  # type: ignore[arg-type]


def test_image_suffix_from_the_name_or_else_the_bytes() -> None:
    assert image_suffix("a.PNG", b"") == ".png"
    assert image_suffix("9f2a-photo.jpeg", b"") == ".jpeg"
    assert image_suffix("noext", jpeg(8, 8)) == ".jpg"
    assert image_suffix("weird.bin", b"not an image") == ".jpg"


def test_upload_urls_are_label_studios_own() -> None:
    assert is_upload_url("/data/upload/3/ab12-cat.jpg", LS_URL)
    assert is_upload_url(f"{LS_URL}/data/upload/3/ab12-cat.jpg", LS_URL)
    assert is_upload_url(f"{LS_URL.upper()}/data/upload/3/ab12-cat.jpg", LS_URL)
    assert not is_upload_url("http://elsewhere:8080/data/upload/3/ab12-cat.jpg", LS_URL)
    assert not is_upload_url("s3://bkt/data/upload/x.jpg", LS_URL)
    assert not is_upload_url("/data/local-files/?d=x.jpg", LS_URL)
    assert not is_upload_url(None, LS_URL)


def test_an_uploaded_image_is_copied_and_the_task_pointed_at_it() -> None:
    body = jpeg(10, 10)
    ls = FakeLabelStudio({"/data/upload/7/ab12-cat.jpg": body})
    storage = FakeStorage()
    task = {"id": 5, "data": {"image": "/data/upload/7/ab12-cat.jpg", "note": "kept"}}
    ref = adopt_upload(task, ls=ls, storage=storage, projects=FakeProjects(), info=INFO)  # type: ignore[arg-type]
    digest = hashlib.sha256(body).hexdigest()
    assert ref == f"s3://bkt/prefix/pets/images/{digest[:2]}/{digest}.jpg"
    assert storage.objects[ref.split("/", 3)[3]] == body
    assert ls.updated == {5: {"image": ref, "note": "kept", "dataset": "train"}}
    assert task["data"] == ls.updated[5]


def test_an_upload_keeps_its_dataset_and_other_tasks_are_left_alone() -> None:
    ls = FakeLabelStudio({"/data/upload/7/x.png": b"png?"})
    task = {"id": 6, "data": {"image": "/data/upload/7/x.png", "dataset": "test"}}
    adopt_upload(task, ls=ls, storage=FakeStorage(), projects=FakeProjects(), info=INFO)  # type: ignore[arg-type]
    assert task["data"]["dataset"] == "test" and task["data"]["image"].endswith(".png")
    for other in ({"id": 1, "data": {"image": "s3://bkt/a.jpg"}}, {"id": 2, "data": "nope"}, {"id": 3}):
        assert adopt_upload(other, ls=ls, storage=FakeStorage(), projects=FakeProjects(), info=INFO) is None  # type: ignore[arg-type]
    gone = {"id": 4, "data": {"image": "/data/upload/7/deleted.jpg"}}
    assert adopt_upload(gone, ls=ls, storage=FakeStorage(), projects=FakeProjects(), info=INFO) is None  # type: ignore[arg-type]
    assert gone["data"] == {"image": "/data/upload/7/deleted.jpg"}
    assert set(ls.updated) == {6}


def test_which_tasks_need_their_predictions() -> None:
    assert _needs_predictions({"predictions": [3], "annotations": []})
    assert _needs_predictions({"predictions": [3], "annotations": [{"id": 1, "was_cancelled": True}]})
    assert not _needs_predictions({"predictions": [3], "annotations": [{"id": 1}]})
    assert not _needs_predictions({"predictions": [{"id": 3, "result": []}], "annotations": []})
    assert not _needs_predictions({"predictions": [], "annotations": []})


def publisher(ls: FakeLabelStudio) -> Publisher:
    return Publisher(None, None, ls, None)  # type: ignore[arg-type]


def test_predictions_are_read_whole_one_task_at_a_time_for_a_few_tasks() -> None:
    ls = FakeLabelStudio(predictions=[{"id": 30, "task": 3, "result": ["r"]}])
    tasks = [
        {"id": 1, "predictions": [], "annotations": [{"id": 9}]},
        {"id": 3, "predictions": [30], "annotations": []},
        {"id": 4, "predictions": [], "annotations": []},
    ]
    out = list(publisher(ls)._predicted(iter(tasks), 7))
    assert [t["id"] for t in out] == [1, 4, 3]  # held back to the end
    assert out[2]["predictions"] == [{"id": 30, "task": 3, "result": ["r"]}]
    assert ls.prediction_calls == [{"task": 3, "project": None}]


def test_predictions_of_many_tasks_are_read_in_one_request() -> None:
    n = PREDICTIONS_ONE_BY_ONE + 5
    ls = FakeLabelStudio(predictions=[{"id": 100 + i, "task": i, "result": [i]} for i in range(n + 3)])
    tasks = [{"id": i, "predictions": [100 + i], "annotations": []} for i in range(n)]
    out = list(publisher(ls)._predicted(iter(tasks), 7))
    assert [t["predictions"][0]["id"] for t in out] == [100 + i for i in range(n)]
    assert ls.prediction_calls == [{"task": None, "project": 7}]


def test_renamed_labels_are_written_back_into_annotations_and_whole_predictions() -> None:
    old = "2026-01-01T00:00:00Z"
    tasks = [
        {
            "id": 1,
            "annotations": [{"id": 10, "result": [choices("cat")], "updated_at": old}],
            "predictions": [{"id": 20, "result": [choices("cat")], "updated_at": old}, 21],
        },
        {"id": 2, "annotations": [{"id": 11, "result": [choices("dog")], "updated_at": old}]},
    ]
    out = list(publisher(FakeLabelStudio())._renamed(iter(tasks), {"label": {"cat": "kitty"}}))
    annotation, prediction = out[0]["annotations"][0], out[0]["predictions"][0]
    assert annotation["result"][0]["value"]["choices"] == ["kitty"]
    assert annotation["updated_at"] == "2026-02-02T00:00:00.000001Z"  # the time of the change, as LS says
    assert prediction["result"][0]["value"]["choices"] == ["kitty"]
    assert prediction["updated_at"] == "2026-03-03T00:00:00.000001Z"
    assert out[0]["predictions"][1] == 21  # ids only: nothing to rename here
    assert out[1]["annotations"][0]["updated_at"] == old  # nothing renamed, nothing written
