"""End to end: every dataset source and action through the ``customlabels`` command line.

Everything real (Label Studio, Redis, moto's S3 server, ``customlabels serve`` and ``customlabels
worker`` as processes); each command runs as a subprocess with the stack's environment. After each step
the manifests in S3 must equal what the core converter makes of Label Studio's export (split by each
task's dataset, as in ``test_sync.py``), and the tasks in Label Studio are checked too.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from bench.bench_dedup import jpeg as dedup_jpeg
from bench.bench_dedup import synthetic_image
from converters.labelconfig import CHOICES, RECTANGLE_LABELS, parse_label_config
from converters.manifest import parse_line
from converters.split import SplitItem, split
from tests.builders import choices, cls_attr, coco, coco_box, coco_image, det_attr, jsonl, line
from tests.e2e.stack import CUSTOMLABELS, World, jpeg
from tests.signin import console_session, form_token

pytestmark = pytest.mark.e2e


# ----------------------------------------------------------------------------------------------- helpers


def run(w: World, *args: str) -> subprocess.CompletedProcess[str]:
    """A ``customlabels`` command with the stack's environment, whatever its exit code."""
    return subprocess.run(
        [CUSTOMLABELS, *args], check=False, env=w.stack.env, capture_output=True, text=True, timeout=120
    )


def cli_json(w: World, *args: str) -> Any:
    """A ``customlabels`` command's JSON output (``--json`` added); it must succeed."""
    return json.loads(w.cli(*args, "--json"))


def refused(w: World, *args: str) -> str:
    """Run a command that must fail with exit code 1; its error message."""
    done = run(w, *args)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    return done.stderr


def make_project(w: World, title: str, *options: str) -> str:
    """``customlabels project create`` (no labels yet); the World now checks this project. Its id."""
    made = cli_json(w, "project", "create", "--title", title, *options)
    w.project_id = made["project"]
    w.folder = made["s3"].split("/", 3)[3]
    return str(w.project_id)


def focus(w: World, project_id: int, folder: str) -> None:
    """Point the World's checks at another project."""
    w.project_id, w.folder = project_id, folder


def png(width: int, height: int, color: tuple[int, int, int] = (10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def image(i: int, *, size: tuple[int, int] = (160, 120)) -> bytes:
    """A distinct JPEG (its colour follows ``i``) of ``size``."""
    return jpeg(*size, color=((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))


def put(w: World, key: str, body: bytes) -> str:
    w.s3.put_object(Bucket=w.bucket, Key=key, Body=body)
    return f"s3://{w.bucket}/{key}"


def tasks(w: World) -> list[dict[str, Any]]:
    """Every task of the World's project, in Label Studio's export shape."""
    return list(json.loads(w.export()))


def config(w: World) -> tuple[list[str], list[str]]:
    """The image-level and the box labels of the project's label config."""
    parsed = parse_label_config(w.client.projects.get(id=w.project_id).label_config)
    return parsed.labels_of(CHOICES), parsed.labels_of(RECTANGLE_LABELS)


def lines(body: bytes) -> dict[str, dict[str, Any]]:
    """Manifest lines by source-ref."""
    return {obj["source-ref"]: obj for obj in map(json.loads, body.splitlines())}


def labels_of(body: bytes) -> dict[str, list[str]]:
    """Each line's label names (image-level and boxes), by source-ref."""
    out = {}
    for ref, obj in lines(body).items():
        entry = parse_line(obj).entry
        assert entry is not None, obj
        out[ref] = sorted(entry.label_names)
    return out


def check(w: World, what: str) -> dict[str, bytes]:
    """S3 equals the core converter's output of Label Studio's export; every line names an object
    that exists; no image has two tasks. Returns the manifests."""
    sides = w.converge(what)
    images = [t["data"]["image"] for t in tasks(w)]
    assert len(images) == len(set(images)), f"{what}: an image has two tasks"
    for side in sides.values():
        for ref in lines(side):
            bucket, key = ref[5:].split("/", 1)
            w.s3.head_object(Bucket=bucket, Key=key)  # raises when the object is missing
    return sides


def create(w: World, project: str, dataset: str, *source: str) -> dict[str, Any]:
    out: dict[str, Any] = cli_json(w, "dataset", "create", project, "--dataset", dataset, *source)
    return out


def describe(w: World, project: str, dataset: str) -> dict[str, Any]:
    out: dict[str, Any] = cli_json(w, "dataset", "describe", project, "--dataset", dataset)
    return out


def entries(w: World, project: str, dataset: str, *filters: str) -> list[dict[str, Any]]:
    out = cli_json(w, "dataset", "entries", project, "--dataset", dataset, *filters)
    return [json.loads(e) for e in out["DatasetEntries"]]


# ------------------------------------------------------------------------------------------ S3 source


def test_s3_folder_labels_reruns_races_and_distribute(world: World) -> None:
    w = world
    pid = make_project(w, f"DS s3 {uuid.uuid4().hex[:6]}")
    layout = {
        "cats/a.jpg": "cats",
        "cats/b.jpg": "cats",
        "cats/deep/er/c.jpg": "cats",  # deeper folders inherit the child folder's label
        "dogs/a.jpg": "dogs",
        "dogs/b.png": "dogs",
        "top.jpg": None,  # directly under the prefix: no label
    }
    for i, name in enumerate(layout):
        put(w, f"incoming/{name}", png(80, 64) if name.endswith(".png") else image(i))
    put(w, "incoming/notes.txt", b"not an image")
    put(w, "incomingx/cats/x.jpg", image(50))  # beside the prefix, not under it
    put(w, "elsewhere/cats/y.jpg", image(51))
    uri = f"s3://{w.bucket}/incoming"  # no trailing slash: still the folder
    source = ("--from-s3", uri, "--labels-from-folders")

    out = create(w, pid, "train", *source)
    assert (out["added"], out["skipped"], out["rejected"]) == (6, 0, 0)
    sides = check(w, "imported from S3")
    want = {f"s3://{w.bucket}/incoming/{n}": [label] if label else [] for n, label in layout.items()}
    assert labels_of(sides["train"]) == want
    assert sides["test"] == b""
    assert {t["data"]["dataset"] for t in tasks(w)} == {"train"}
    assert sorted(config(w)[0]) == ["cats", "dogs"]

    # Re-running imports only what is new.
    out = create(w, pid, "train", *source)
    assert (out["added"], out["skipped"]) == (0, 6)
    put(w, "incoming/dogs/c.jpg", image(7))
    out = create(w, pid, "train", *source)
    assert (out["added"], out["skipped"]) == (1, 6)

    # Two runs at once: the second waits for the first and finds its tasks.
    for i, name in enumerate(["cats/r1.jpg", "cats/r2.jpg", "dogs/r3.jpg", "birds/r4.jpg", "birds/r5.jpg"]):
        put(w, f"incoming/{name}", image(20 + i))
    args = [CUSTOMLABELS, "dataset", "create", pid, "--dataset", "train", *source, "--json"]
    racers = [
        subprocess.Popen(args, env=w.stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [r.communicate(timeout=120) for r in racers]
    assert all(r.returncode == 0 for r in racers), results
    assert sorted(json.loads(out)["added"] for out, _ in results) == [0, 5]
    assert len(tasks(w)) == 12
    sides = check(w, "after two runs at once")
    before = labels_of(sides["train"])
    assert len(before) == 12 and sides["test"] == b""

    # Distribute: 20% of train, stratified by label, as the core's split of the same entries.
    counts = cli_json(w, "dataset", "distribute", pid)
    planned = split([SplitItem(ref, frozenset(names)) for ref, names in before.items()], test_fraction=0.2)
    assert counts == {"train": 9, "test": 3}
    assert {t["data"]["image"]: t["data"]["dataset"] for t in tasks(w)} == planned
    sides = check(w, "distributed")
    test_labels = {n for names in labels_of(sides["test"]).values() for n in names}
    train_labels = {n for names in labels_of(sides["train"]).values() for n in names}
    assert test_labels == train_labels == {"cats", "dogs", "birds"}
    assert "not empty" in refused(w, "dataset", "distribute", pid)
    assert describe(w, pid, "test")["DatasetStats"] == {
        "TotalEntries": 3,
        "LabeledEntries": 3,
        "TotalLabels": 3,
        "ErrorEntries": 0,
    }
    stats = describe(w, pid, "train")
    assert stats["DatasetStats"]["TotalEntries"] == 9 and stats["DatasetStats"]["LabeledEntries"] == 8
    assert stats["Status"] == "UPDATE_COMPLETE"


def test_a_single_dataset_project_and_too_few_images_to_distribute(world: World) -> None:
    w = world
    pid = make_project(w, f"DS single {uuid.uuid4().hex[:6]}", "--datasets", "train")
    for i, name in enumerate(["a/1.jpg", "a/2.jpg", "b/1.jpg"]):
        put(w, f"in/{name}", image(i))
    source = ("--from-s3", f"s3://{w.bucket}/in/", "--labels-from-folders")
    assert create(w, pid, "train", *source)["added"] == 3
    sides = check(w, "one dataset")
    assert len(lines(sides["train"])) == 3 and sides["test"] == b""
    assert "no test dataset" in refused(w, "dataset", "describe", pid, "--dataset", "test")
    assert "both a training and a test dataset" in refused(w, "dataset", "distribute", pid)

    assert create(w, pid, "test")["added"] == 0  # an empty test dataset
    error = refused(w, "dataset", "distribute", pid)
    assert "ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE" in error and "b (1)" in error
    assert {t["data"]["dataset"] for t in tasks(w)} == {"train"}
    assert describe(w, pid, "train")["Status"] == "UPDATE_FAILED"

    put(w, "in/b/2.jpg", image(9))
    assert create(w, pid, "train", *source)["added"] == 1
    assert cli_json(w, "dataset", "distribute", pid) == {"train": 2, "test": 2}
    sides = check(w, "distributed")
    assert sorted(n for names in labels_of(sides["test"]).values() for n in names) == ["a", "b"]


# --------------------------------------------------------------------------- this computer, Label Studio


def test_images_from_a_folder_and_from_label_studio_uploads_land_in_the_project_folder(
    world: World, tmp_path: Path
) -> None:
    w = world
    pid = make_project(w, f"DS dir {uuid.uuid4().hex[:6]}")
    photos = tmp_path / "photos"
    files = {"cats/1.jpg": image(1), "cats/2.JPG": image(2), "dogs/1.png": png(90, 70), "loose.jpg": image(4)}
    files["dogs/same-as-cats-1.jpg"] = files["cats/1.jpg"]  # the same bytes: one object, one entry
    for name, body in files.items():
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        (photos / name).write_bytes(body)
    (photos / "notes.txt").write_text("not an image")

    out = create(w, pid, "train", "--from-dir", str(photos), "--labels-from-folders")
    assert (out["added"], out["skipped"]) == (4, 1)
    sides = check(w, "imported from a folder")

    def ref(body: bytes, ext: str) -> str:
        digest = hashlib.sha256(body).hexdigest()
        return f"s3://{w.bucket}/{w.folder}images/{digest[:2]}/{digest}{ext}"

    want = {
        ref(files["cats/1.jpg"], ".jpg"): ["cats"],  # the first of the two copies (path order) wins
        ref(files["cats/2.JPG"], ".jpg"): ["cats"],
        ref(files["dogs/1.png"], ".png"): ["dogs"],
        ref(files["loose.jpg"], ".jpg"): [],
    }
    assert labels_of(sides["train"]) == want
    for name in ("cats/1.jpg", "dogs/1.png"):
        key = ref(files[name], "." + name.rsplit(".", 1)[1]).split("/", 3)[3]
        assert w.s3.get_object(Bucket=w.bucket, Key=key)["Body"].read() == files[name]
    assert create(w, pid, "train", "--from-dir", str(photos))["added"] == 0

    # Files uploaded through Label Studio itself: the worker copies them into the project's folder.
    uploads = {"up1.jpg": image(11), "up2.png": png(100, 80, (1, 2, 3))}
    response = httpx.post(
        f"{w.ls.url}/api/projects/{w.project_id}/import",
        files=[(f"file{i}", (n, b, "image/png" if n.endswith("png") else "image/jpeg")) for i, (n, b) in enumerate(uploads.items())],
        headers={"Authorization": f"Token {w.ls.token}"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    uploaded = [t for t in tasks(w) if t.get("file_upload")]
    assert len(uploaded) == 2 and all(t["data"]["image"].startswith("/data/upload/") for t in uploaded)
    deadline = time.monotonic() + 30
    while any(not t["data"]["image"].startswith("s3://") for t in tasks(w)):
        assert time.monotonic() < deadline, f"uploads not adopted\n{w.stack.logs()}"
        time.sleep(0.25)
    adopted = {t["id"]: t["data"] for t in tasks(w) if t.get("file_upload")}
    assert sorted(d["image"] for d in adopted.values()) == sorted(
        [ref(uploads["up1.jpg"], ".jpg"), ref(uploads["up2.png"], ".png")]
    )
    assert {d["dataset"] for d in adopted.values()} == {"train"}
    sides = check(w, "uploads adopted")
    assert len(lines(sides["train"])) == 6

    # An upload is an entry like any other: label it in Label Studio, the manifest follows.
    first = min(adopted)
    w.client.annotations.create(id=first, result=[choices("dogs")], was_cancelled=False, ground_truth=False)
    sides = check(w, "upload labelled")
    assert labels_of(sides["train"])[adopted[first]["image"]] == ["dogs"]


# ------------------------------------------------------------------------------------------- manifests


def test_manifests_from_s3_and_this_computer_with_bad_lines_and_the_multilabel_job_form(
    world: World, tmp_path: Path
) -> None:
    w = world
    pid = make_project(w, f"DS manifest {uuid.uuid4().hex[:6]}", "--datasets", "train")
    refs = [put(w, f"src/{i}.jpg", image(i, size=(200, 100))) for i in range(16)]
    good = [
        line(refs[0], cls_attr("animal", "cat")),
        line(refs[1], cls_attr("animal", "dog"), extra_key={"kept": True}),
        line(refs[2], det_attr("bounding-box", [("cat", 10, 10, 50, 40)], size=(200, 100))),
        # A box too small for Rekognition beside a good one: imported with its error, still a valid row.
        line(
            refs[3], det_attr("bounding-box", [("dog", 0, 0, 100, 100), ("cat", 5, 5, 1, 1)], size=(200, 100))
        ),
        line(refs[4], cls_attr("animal", "cat", confidence=0.75, human="no")),  # a model's: a prediction
        line(refs[5]),  # no label yet
        *(line(refs[i], cls_attr("animal", "cat" if i % 2 else "dog")) for i in range(6, 12)),
    ]
    bad = [
        '{"source-ref": "s3://broken',  # line 13: not JSON
        cls_attr("animal", "cat"),  # 14: no source-ref
        line(refs[0], cls_attr("animal", "dog")),  # 15: the image of line 1 again
    ]
    body = jsonl(*good, *bad).encode()
    put(w, "manifests/train.manifest", body)

    out = create(w, pid, "train", "--from-manifest", f"s3://{w.bucket}/manifests/train.manifest")
    assert (out["added"], out["rejected"]) == (12, 3)
    assert [(r["line"], r["code"]) for r in out["rejected_lines"]] == [
        (13, "ERROR_INVALID_JSON_LINE"),
        (14, "ERROR_MISSING_SOURCE_REF"),
        (15, "DUPLICATE_SOURCE_REF"),
    ]
    sides = check(w, "manifest imported")
    published = lines(sides["train"])
    assert published == {obj["source-ref"]: obj for obj in good}  # untouched entries round-trip exactly
    assert sorted(config(w)[0]) == ["cat", "dog"] and sorted(config(w)[1]) == ["cat", "dog"]
    by_ref = {t["data"]["image"]: t for t in tasks(w)}
    assert len(by_ref) == 12
    assert by_ref[refs[0]]["annotations"] and not by_ref[refs[0]]["predictions"]
    assert by_ref[refs[4]]["predictions"] and not by_ref[refs[4]]["annotations"]
    assert not by_ref[refs[5]]["annotations"] and not by_ref[refs[5]]["predictions"]
    errors = entries(w, pid, "train", "--has-errors")
    assert [e["source-ref"] for e in errors] == [refs[3]]
    assert [c["code"] for c in errors[0]["cl-errors"]] == ["ERROR_BOUNDING_BOX_TOO_SMALL"]
    assert (
        create(w, pid, "train", "--from-manifest", f"s3://{w.bucket}/manifests/train.manifest")["added"] == 0
    )

    # More than 20% of the lines bad: nothing at all is imported.
    local = tmp_path / "mostly-bad.manifest"
    local.write_text(jsonl(line(refs[12], cls_attr("animal", "bird")), "not json", "{}", line(refs[13])))
    error = refused(w, "dataset", "create", pid, "--dataset", "test", "--from-manifest", str(local))
    assert "ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST" in error
    assert len(tasks(w)) == 12 and "bird" not in config(w)[0]
    record = describe(w, pid, "test")
    assert record["Status"] == "CREATE_FAILED" and record["DatasetStats"]["TotalEntries"] == 0
    missing = refused(
        w, "dataset", "create", pid, "--dataset", "test", "--from-manifest", f"s3://{w.bucket}/nope"
    )
    assert "ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT" in missing

    # A SageMaker Ground Truth multi-label job's output, from this computer, into the test dataset.
    multi = {
        "source-ref": refs[14],
        "animals": [0, 2],
        "animals-metadata": {
            "job-name": "labeling-job/animals",
            "class-map": {"0": "cat", "1": "dog", "2": "bird"},
            "human-annotated": "yes",
            "creation-date": "2019-11-12T01:23:45.678901",
            "confidence-map": {"0": 0.9, "2": 0.8},
            "type": "groundtruth/image-classification-multilabel",
        },
    }
    local.write_text(jsonl(multi, line(refs[15], cls_attr("animal", "dog"))))
    out = create(w, pid, "test", "--from-manifest", str(local))
    assert (out["added"], out["rejected"]) == (2, 0)
    sides = check(w, "multi-label job imported")
    line14 = lines(sides["test"])[refs[14]]
    assert {line14["animals0-metadata"]["class-name"], line14["animals1-metadata"]["class-name"]} == {
        "cat",
        "bird",
    }
    assert line14["animals0-metadata"]["type"] == "groundtruth/image-classification"
    assert "bird" in config(w)[0]
    assert 'choice="multiple"' in w.client.projects.get(id=w.project_id).label_config
    assert describe(w, pid, "test")["Status"] == "UPDATE_COMPLETE"
    stats = {s["LabelName"]: s["LabelStats"] for s in cli_json(w, "dataset", "labels", pid)}
    assert stats == {
        "cat": {"EntryCount": 8, "BoundingBoxCount": 2},
        "dog": {"EntryCount": 6, "BoundingBoxCount": 1},
        "bird": {"EntryCount": 1, "BoundingBoxCount": 0},
    }


# ---------------------------------------------------------------------- another dataset, COCO and CSV


def test_copy_a_dataset_into_another_project_then_coco_and_csv(world: World, tmp_path: Path) -> None:
    w = world
    source = make_project(w, f"DS copy from {uuid.uuid4().hex[:6]}")
    source_project = (w.project_id, w.folder)
    refs = [put(w, f"pics/{i}.jpg", image(i, size=(200, 100))) for i in range(4)]
    manifest = tmp_path / "source.manifest"
    manifest.write_text(
        jsonl(
            line(refs[0], cls_attr("animal", "cat")),
            line(refs[1], det_attr("bounding-box", [("dog", 20, 10, 60, 50)], size=(200, 100))),
            line(refs[2], cls_attr("animal", "cat", confidence=0.5, human="no")),
            line(refs[3]),
        )
    )
    assert create(w, source, "train", "--from-manifest", str(manifest))["added"] == 4
    copied_from = check(w, "the source dataset")

    target = make_project(w, f"DS copy to {uuid.uuid4().hex[:6]}", "--datasets", "train")
    try:
        title = w.client.projects.get(id=source_project[0]).title
        out = create(w, target, "train", "--from-dataset", f"{title}/train")
        assert (out["added"], out["rejected"]) == (4, 0)
        sides = check(w, "copied")
        assert lines(sides["train"]) == lines(copied_from["train"])
        by_ref = {t["data"]["image"]: t for t in tasks(w)}
        assert by_ref[refs[0]]["annotations"] and by_ref[refs[1]]["annotations"]
        assert by_ref[refs[2]]["predictions"] and not by_ref[refs[2]]["annotations"]
        assert sorted(config(w)[0]) == ["cat"] and config(w)[1] == ["dog"]
        assert "another project" in refused(w, "dataset", "create", target, "--dataset", "train", "--from-dataset", f"{target}/train")  # fmt: skip

        # COCO (object detection) into a new test dataset, through the core's transform.
        for name in ("a.jpg", "b.jpg"):
            put(w, f"coco/{name}", image(len(name), size=(200, 100)))
        coco_file = tmp_path / "coco.json"
        coco_file.write_text(
            json.dumps(
                coco(
                    [coco_image(1, "a.jpg", (200, 100)), coco_image(2, "b.jpg", (200, 100))],
                    [coco_box(1, 1, 7, [10, 20, 30, 40]), coco_box(2, 1, 8, [50, 5, 20, 20]), coco_box(3, 2, 7, [0, 0, 200, 100])],
                    {7: "bird", 8: "dog"},
                )
            )
        )  # fmt: skip
        out = create(
            w, target, "test", "--from-coco", str(coco_file), "--s3-prefix", f"s3://{w.bucket}/coco/"
        )
        assert out["added"] == 2
        sides = check(w, "COCO imported")
        boxes = {
            ref: sorted((a["left"], a["top"], a["width"], a["height"]) for a in obj["bounding-box"]["annotations"])
            for ref, obj in lines(sides["test"]).items()
        }  # fmt: skip
        assert boxes == {
            f"s3://{w.bucket}/coco/a.jpg": [(10, 20, 30, 40), (50, 5, 20, 20)],
            f"s3://{w.bucket}/coco/b.jpg": [(0, 0, 200, 100)],
        }
        assert sorted(config(w)[1]) == ["bird", "dog"]

        # CSV (image-level, several labels a row) into train, through the core's transform.
        for name in ("x.jpg", "y.jpg"):
            put(w, f"csv/{name}", image(len(name) + 3))
        table = tmp_path / "labels.csv"
        table.write_text("csv/x.jpg,cat,bird\ncsv/y.jpg,,dog\n")
        out = create(w, target, "train", "--from-csv", str(table), "--s3-prefix", f"s3://{w.bucket}/")
        assert out["added"] == 2
        sides = check(w, "CSV imported")
        found = labels_of(sides["train"])
        assert found[f"s3://{w.bucket}/csv/x.jpg"] == ["bird", "cat"]
        assert found[f"s3://{w.bucket}/csv/y.jpg"] == ["dog"]
        assert sorted(config(w)[0]) == ["bird", "cat", "dog"]
        table.write_text("csv/x.jpg,cat\ncsv/x.jpg,dog\n")
        assert "duplicate" in refused(w, "dataset", "create", target, "--dataset", "train", "--from-csv", str(table), "--s3-prefix", f"s3://{w.bucket}/")  # fmt: skip
        assert len(tasks(w)) == 8
    finally:
        w.client.projects.delete(id=source_project[0])


# ------------------------------------------------------------- labels, stats, entries, updates, snapshots


def test_labels_stats_entries_updates_and_snapshots(world: World, tmp_path: Path) -> None:
    w = world
    pid = make_project(w, f"DS labels {uuid.uuid4().hex[:6]}")
    refs = [put(w, f"src/{i}.jpg", image(i, size=(200, 100))) for i in range(8)]
    manifest = tmp_path / "train.manifest"
    manifest.write_text(
        jsonl(
            line(refs[0], cls_attr("animal", "cat")),
            line(refs[1], cls_attr("animal", "dog")),
            line(refs[2], det_attr("bounding-box", [("cat", 10, 10, 40, 40), ("dog", 100, 20, 50, 60)], size=(200, 100))),
            line(refs[3], cls_attr("animal", "cat", confidence=0.6, human="no")),
            line(refs[4]),
            line(refs[5], det_attr("bounding-box", [("dog", 3, 3, 1, 1)], size=(200, 100))),  # no valid box
        )
    )  # fmt: skip
    assert create(w, pid, "train", "--from-manifest", str(manifest))["added"] == 6
    manifest.write_text(jsonl(line(refs[6], cls_attr("animal", "cat"))))
    assert create(w, pid, "test", "--from-manifest", str(manifest))["added"] == 1

    def label_stats(*args: str) -> dict[str, tuple[int, int]]:
        found = cli_json(w, "dataset", "labels", pid, *args)
        return {
            s["LabelName"]: (s["LabelStats"]["EntryCount"], s["LabelStats"]["BoundingBoxCount"])
            for s in found
        }

    assert label_stats() == {"cat": (4, 1), "dog": (3, 2)}
    assert label_stats("--dataset", "train") == {"cat": (3, 1), "dog": (3, 2)}

    # Labels: add (image-level and box), rename, delete (only when unused).
    w.cli("dataset", "labels", pid, "add", "bird")
    w.cli("dataset", "labels", pid, "add", "fish", "--boxes")
    assert "bird" in config(w)[0] and "fish" in config(w)[1]
    assert label_stats("--dataset", "test") == {"cat": (1, 0), "dog": (0, 0), "bird": (0, 0), "fish": (0, 0)}
    w.cli("dataset", "labels", pid, "rename", "cat", "kitty")
    assert "cat" not in config(w)[0] + config(w)[1] and "kitty" in config(w)[0] and "kitty" in config(w)[1]
    sides = check(w, "label renamed")
    assert b'"cat"' not in sides["train"] + sides["test"]
    assert labels_of(sides["train"])[refs[3]] == ["kitty"]  # the model's label (a prediction) too
    assert labels_of(sides["test"])[refs[6]] == ["kitty"]
    by_ref = {t["data"]["image"]: t for t in tasks(w)}
    assert "kitty" in json.dumps(by_ref[refs[0]]["annotations"]) and "cat" not in json.dumps(by_ref[refs[0]]["annotations"])  # fmt: skip
    assert "used by" in refused(w, "dataset", "labels", pid, "delete", "dog")
    w.cli("dataset", "labels", pid, "delete", "bird")
    w.cli("dataset", "labels", pid, "delete", "fish")
    assert sorted(config(w)[0]) == ["dog", "kitty"] and sorted(config(w)[1]) == ["dog", "kitty"]
    assert "no label" in refused(w, "dataset", "labels", pid, "rename", "bird", "owl")

    # DescribeDataset and ListDatasetEntries with every filter and pagination.
    assert describe(w, pid, "train")["DatasetStats"] == {
        "TotalEntries": 6,
        "LabeledEntries": 5,
        "TotalLabels": 2,
        "ErrorEntries": 1,
    }
    every = entries(w, pid, "train")
    assert [e["source-ref"] for e in every] == refs[:6]
    assert [e["cl-metadata"]["is_labeled"] for e in every] == [True, True, True, True, False, True]
    assert [e["source-ref"] for e in entries(w, pid, "train", "--contains-labels", "kitty,owl")] == [refs[0], refs[2], refs[3]]  # fmt: skip
    assert [e["source-ref"] for e in entries(w, pid, "train", "--unlabeled")] == [refs[4]]
    assert [e["source-ref"] for e in entries(w, pid, "train", "--labeled", "--source-ref-contains", "src/2.")] == [refs[2]]  # fmt: skip
    erred = entries(w, pid, "train", "--has-errors")
    assert [e["source-ref"] for e in erred] == [refs[5]]
    assert {c["code"] for c in erred[0]["cl-errors"]} >= {"ERROR_BOUNDING_BOX_TOO_SMALL"}
    paged: list[str] = []
    token: list[str] = []
    for _ in range(4):
        page = cli_json(w, "dataset", "entries", pid, "--dataset", "train", "--max-results", "4", *token)
        paged += [json.loads(e)["source-ref"] for e in page["DatasetEntries"]]
        if "NextToken" not in page:
            break
        token = ["--next-token", page["NextToken"]]
    assert paged == refs[:6] and len(token) == 2
    assert "NextToken" in refused(w, "dataset", "entries", pid, "--dataset", "test", *token)  # other filters

    # Snapshots are immutable; UpdateDatasetEntries replaces whole lines and adds new ones.
    first = cli_json(w, "snapshot", pid)
    frozen = {
        name: w.s3.get_object(Bucket=w.bucket, Key=f"{w.folder}snapshots/{first['id']}/{name}")["Body"].read()
        for name in ("train.manifest", "test.manifest")
    }
    assert frozen == {f"{side}.manifest": body for side, body in check(w, "before the update").items()}
    replaced = line(refs[1], cls_attr("species", "kitty", job="relabel"))
    update = tmp_path / "update.jsonl"
    update.write_text(jsonl(replaced, line(refs[7], cls_attr("animal", "dog"))))
    out = cli_json(w, "dataset", "update", pid, "--dataset", "train", "--lines", str(update))
    assert (out["added"], out["updated"], out["rejected"]) == (1, 1, 0)
    sides = check(w, "entries updated")
    assert lines(sides["train"])[refs[1]] == replaced
    by_ref = {t["data"]["image"]: t for t in tasks(w)}
    assert len(by_ref) == 8
    results = [r for a in by_ref[refs[1]]["annotations"] for r in a["result"]]
    assert [r["value"]["choices"] for r in results] == [["kitty"]]
    second = cli_json(w, "snapshot", pid)
    diff = cli_json(w, "snapshot", "diff", f"{pid}/{first['id']}", f"{pid}/{second['id']}")
    assert [d["source-ref"] for d in diff["added"]] == [refs[7]]
    assert [d["source-ref"] for d in diff["relabelled"]] == [refs[1]] and diff["removed"] == []
    assert diff["relabelled"][0]["before"]["labels"] == ["dog"] and diff["relabelled"][0]["after"]["labels"] == ["kitty"]  # fmt: skip

    w.client.tasks.delete(id=by_ref[refs[4]]["id"])
    check(w, "a task deleted")
    third = cli_json(w, "snapshot", pid)
    diff = cli_json(w, "snapshot", "diff", f"{pid}/{second['id']}", f"{pid}/{third['id']}")
    assert [d["source-ref"] for d in diff["removed"]] == [refs[4]] and not diff["added"] + diff["relabelled"]
    assert cli_json(w, "snapshot", "list", pid) == [first["id"], second["id"], third["id"]]
    for name, body in frozen.items():
        key = f"{w.folder}snapshots/{first['id']}/{name}"
        assert w.s3.get_object(Bucket=w.bucket, Key=key)["Body"].read() == body

    # DeleteDataset: the test dataset's tasks go, and so does the dataset.
    w.cli("dataset", "delete", pid, "--dataset", "test")
    sides = check(w, "test dataset deleted")
    assert sides["test"] == b"" and len(tasks(w)) == 6
    assert "no test dataset" in refused(w, "dataset", "describe", pid, "--dataset", "test")


# ------------------------------------------------------------------------------------ leakage check


def test_check_finds_a_copy_across_train_and_test_and_fix_moves_it(world: World) -> None:
    w = world
    pid = make_project(w, f"DS check {uuid.uuid4().hex[:6]}")
    originals = [synthetic_image(seed) for seed in range(4)]
    for i, picture in enumerate(originals):
        put(w, f"chk/train/{'cats' if i % 2 else 'dogs'}/{i}.jpg", dedup_jpeg(picture))
    copy = originals[0].resize((originals[0].width // 2, originals[0].height // 2))  # a resized copy
    put(w, "chk/test/dogs/copy.jpg", dedup_jpeg(copy, quality=70))
    put(w, "chk/test/cats/other.jpg", dedup_jpeg(synthetic_image(99)))
    assert (
        create(w, pid, "train", "--from-s3", f"s3://{w.bucket}/chk/train/", "--labels-from-folders")["added"]
        == 4
    )
    assert (
        create(w, pid, "test", "--from-s3", f"s3://{w.bucket}/chk/test/", "--labels-from-folders")["added"]
        == 2
    )
    check(w, "imported")

    dry = run(w, "dataset", "check", pid, "--json")
    assert dry.returncode == 1, dry.stderr  # images leak
    report = json.loads(dry.stdout)
    original, leaked = f"s3://{w.bucket}/chk/train/dogs/0.jpg", f"s3://{w.bucket}/chk/test/dogs/copy.jpg"
    assert [(g["train"], g["test"]) for g in report["crossing"]] == [([original], [leaked])]
    assert report["fix"] == {
        "moves": [{"source-ref": leaked, "from": "test", "to": "train"}],
        "applied": False,
    }
    assert report["coverage"]["labels"]["dogs"]["test"]["entries"] == 1
    by_image = {t["data"]["image"]: t for t in tasks(w)}
    assert by_image[leaked]["data"]["dataset"] == "test"  # a dry run
    assert report["tab"]["title"] == "Leaking entries" and report["tab"]["tasks"] == 2
    assert leaking_tab(w, report["tab"]["view"]) == {by_image[original]["id"], by_image[leaked]["id"]}

    # The console: a person signed in with Label Studio asks for the check and reads it on the page.
    browser = console_session(w.stack.url, w.ls.username, w.ls.password)
    try:
        page = browser.get(f"/console/projects/{pid}")
        queued = browser.post(f"/console/projects/{pid}/actions/check", data={"token": form_token(page.text)})
        assert queued.status_code == 302
        deadline = time.monotonic() + 120
        while 'id="check"' not in (page := browser.get(f"/console/projects/{pid}")).text:
            assert time.monotonic() < deadline, "the console's check did not finish"
            time.sleep(0.5)
        shown = page.text.split('id="check"', 1)[1]
        assert leaked in shown and original in shown and "Leaking entries" in shown
    finally:
        browser.close()

    fixed = run(w, "dataset", "check", pid, "--fix", "--json")
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["fix"]["applied"] is True
    sides = check(w, "fixed")
    assert leaked in lines(sides["train"]) and leaked not in lines(sides["test"])
    again = json.loads(run(w, "dataset", "check", pid, "--json").stdout)
    assert again["crossing"] == [] and again["coverage"]["missing_from_test"] == ["dogs"]
    assert again["tab"]["view"] == report["tab"]["view"] and leaking_tab(w, again["tab"]["view"]) == set()


def leaking_tab(w: World, view: int) -> set[int]:
    """The task ids Label Studio's Data Manager shows in a tab (as a person opening it sees them)."""
    page = w.client.tasks.list(project=w.project_id, view=view, page_size=100)
    return {int(t.id) for t in page}
