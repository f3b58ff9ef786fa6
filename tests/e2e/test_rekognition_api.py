"""End to end through boto3's own ``rekognition`` client: the dataset workflow of Rekognition Custom
Labels against the running service (``customlabels serve`` + ``customlabels worker`` processes, the
real Label Studio, Redis, moto's S3 server).

Create a project, a training dataset from a manifest in S3 and an empty test dataset, distribute,
list entries and labels, update an entry, delete; after each step the tasks in Label Studio and the
manifests in S3 must say the same as the API. Plus the error classes boto3 raises.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.builders import cls_attr, det_attr, line
from tests.e2e.conftest import StackFactory
from tests.e2e.stack import Stack, jpeg
from tests.realparts import LabelStudioServer

pytestmark = pytest.mark.e2e

KEY_ID = "AKIDE2EREKOGNITION01"
SECRET = "e2e-rekognition-secret-0123456789abcdef"
REGION = "us-east-1"
IN_PROGRESS = {"CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS"}
WAIT_SECONDS = 60
# Ten images: five cats, five dogs; four of them also have a "face" box.
CATS = [f"photos/cat-{i}.jpg" for i in range(5)]
DOGS = [f"photos/dog-{i}.jpg" for i in range(5)]
FACES = {CATS[0], CATS[1], DOGS[0], DOGS[1]}


@pytest.fixture
def stack(make_stack: StackFactory) -> Stack:
    return make_stack(CUSTOMLABELS_API_ACCESS_KEY_ID=KEY_ID, CUSTOMLABELS_API_SECRET_ACCESS_KEY=SECRET)


def rekognition(stack: Stack, *, secret: str = SECRET) -> Any:
    return boto3.client(
        "rekognition",
        endpoint_url=stack.url,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


class Check:
    """What Label Studio and S3 hold for the project, to compare with what the API says."""

    def __init__(self, ls: LabelStudioServer, s3: Any, bucket: str, stack: Stack) -> None:
        self.ls = ls
        self.s3 = s3
        self.bucket = bucket
        self.stack = stack
        self.project_id = 0
        self.folder = ""

    def find_project(self, title: str) -> None:
        [project] = [p for p in self.ls.client().projects.list(title=title) if p.title == title]
        self.project_id = int(project.id)
        record = self.s3.list_objects_v2(Bucket=self.bucket, Prefix="customlabels/")["Contents"]
        [key] = [o["Key"] for o in record if o["Key"].endswith("/project.json")]
        self.folder = key.removesuffix("project.json")

    def tasks(self) -> list[dict[str, Any]]:
        """Every task of the project, from Label Studio's export."""
        export = httpx.get(
            f"{self.ls.url}/api/projects/{self.project_id}/export",
            params={"exportType": "JSON", "download_all_tasks": "true"},
            headers={"Authorization": f"Token {self.ls.token}"},
            timeout=60,
        )
        export.raise_for_status()
        result: list[dict[str, Any]] = export.json()
        return result

    def datasets(self) -> dict[str, set[str]]:
        """The images of each dataset, as Label Studio's tasks say."""
        out: dict[str, set[str]] = {"train": set(), "test": set()}
        for task in self.tasks():
            out[task["data"]["dataset"]].add(task["data"]["image"])
        return out

    def manifest(self, side: str) -> dict[str, dict[str, Any]]:
        """The published manifest's lines by source-ref (empty when there is none)."""
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=f"{self.folder}{side}.manifest")["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return {}
        lines = [json.loads(raw) for raw in body.splitlines() if raw.strip()]
        return {obj["source-ref"]: obj for obj in lines}

    def wait_manifests(self, expected: dict[str, set[str]]) -> None:
        """Wait until both manifests list exactly these images (the publish follows the tasks)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            have = {side: set(self.manifest(side)) for side in ("train", "test")}
            if have == expected or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert have == expected, self.stack.logs()


def labels_of(obj: dict[str, Any]) -> set[str]:
    """The labels a manifest line (or a listed entry) carries: class names and box classes."""
    out = set()
    for key, value in obj.items():
        if key.endswith("-metadata") and isinstance(value, dict):
            if "class-name" in value:
                out.add(value["class-name"])
            out.update(value.get("class-map", {}).values())
    return out


def manifest_lines(
    bucket: str, names: list[str], *, relabel: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    out = []
    for name in names:
        label = (relabel or {}).get(name) or ("cat" if name.startswith("photos/cat") else "dog")
        attrs = [cls_attr("animal", label)]
        if name in FACES:
            attrs.append(det_attr("faces", [("face", 20, 10, 100, 80)], size=(320, 240)))
        out.append(line(f"s3://{bucket}/{name}", *attrs))
    return out


def wait_done(client: Any, arn: str, stack: Stack) -> dict[str, Any]:
    """Poll DescribeDataset until the dataset is no longer in progress."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        description: dict[str, Any] = client.describe_dataset(DatasetArn=arn)["DatasetDescription"]
        if description["Status"] not in IN_PROGRESS:
            return description
        assert time.monotonic() < deadline, f"{arn} stayed {description['Status']}\n{stack.logs()}"
        time.sleep(0.3)


def wait_gone(client: Any, arn: str, stack: Stack) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            status = client.describe_dataset(DatasetArn=arn)["DatasetDescription"]["Status"]
        except client.exceptions.ResourceNotFoundException:
            return
        assert status == "DELETE_IN_PROGRESS" and time.monotonic() < deadline, stack.logs()
        time.sleep(0.3)


def test_the_dataset_workflow_through_boto3(
    stack: Stack, label_studio: LabelStudioServer, s3: Any, bucket: str
) -> None:
    client = rekognition(stack)
    check = Check(label_studio, s3.client, bucket, stack)
    name = f"e2e-rekognition-{uuid.uuid4().hex[:6]}"
    for number, image in enumerate([*CATS, *DOGS, "photos/new.jpg"]):
        # Each image its own: copies of one image are one duplicate group, which distribute keeps on one side.
        color = (number * 37 % 256, number * 91 % 256, number * 53 % 256)
        s3.client.put_object(Bucket=bucket, Key=image, Body=jpeg(320, 240, color=color))
    refs = {f"s3://{bucket}/{n}" for n in CATS + DOGS}
    try:
        _workflow(client, check, stack, name, bucket, refs)
    finally:
        leftover = [p for p in label_studio.client().projects.list(title=name) if p.title == name]
        for project in leftover:
            label_studio.client().projects.delete(id=project.id)


def _workflow(client: Any, check: Check, stack: Stack, name: str, bucket: str, refs: set[str]) -> None:
    # --- CreateProject: a Label Studio project, with no dataset yet.
    project_arn = client.create_project(ProjectName=name)["ProjectArn"]
    assert project_arn.startswith(f"arn:aws:rekognition:{REGION}:123456789012:project/{name}/")
    [described] = client.describe_projects(ProjectNames=[name])["ProjectDescriptions"]
    assert (described["ProjectArn"], described["Status"], described["Datasets"]) == (
        project_arn,
        "CREATED",
        [],
    )
    with pytest.raises(client.exceptions.ResourceInUseException):
        client.create_project(ProjectName=name)
    check.find_project(name)
    assert check.tasks() == []

    # --- CreateDataset TRAIN from a manifest in S3 (one broken line of 11: under 20%, dropped).
    body = "".join(json.dumps(obj) + "\n" for obj in manifest_lines(bucket, CATS + DOGS)) + "{broken\n"
    stack_manifest = "manifests/train.manifest"
    check.s3.put_object(Bucket=bucket, Key=stack_manifest, Body=body.encode())
    source = {"GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Name": stack_manifest}}}
    train = client.create_dataset(ProjectArn=project_arn, DatasetType="TRAIN", DatasetSource=source)[
        "DatasetArn"
    ]
    assert train.startswith(f"arn:aws:rekognition:{REGION}:123456789012:project/{name}/dataset/train/")
    assert client.describe_dataset(DatasetArn=train)["DatasetDescription"]["Status"] == "CREATE_IN_PROGRESS"
    done = wait_done(client, train, stack)
    assert (done["Status"], done["StatusMessageCode"]) == ("CREATE_COMPLETE", "SUCCESS"), done
    assert done["DatasetStats"] == {
        "LabeledEntries": 10,
        "TotalEntries": 10,
        "TotalLabels": 3,
        "ErrorEntries": 0,
    }
    assert check.datasets() == {"train": refs, "test": set()}
    assert all(task["annotations"] for task in check.tasks())
    check.wait_manifests({"train": refs, "test": set()})
    assert {r: labels_of(o) for r, o in check.manifest("train").items()} == {
        r: {"cat" if "/cat-" in r else "dog"} | ({"face"} if r.split("/", 3)[3] in FACES else set())
        for r in refs
    }

    # --- Errors, as boto3 raises them.
    with pytest.raises(client.exceptions.ResourceAlreadyExistsException):
        client.create_dataset(ProjectArn=project_arn, DatasetType="TRAIN")
    with pytest.raises(client.exceptions.InvalidParameterException):
        client.create_dataset(
            ProjectArn=project_arn, DatasetType="TEST", DatasetSource={**source, "DatasetArn": train}
        )
    with pytest.raises(client.exceptions.InvalidParameterException):  # neither: an empty DatasetSource
        client.create_dataset(ProjectArn=project_arn, DatasetType="TEST", DatasetSource={})
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_dataset(DatasetArn=train.rsplit("/", 1)[0] + "/1")
    with pytest.raises(client.exceptions.AccessDeniedException):
        rekognition(stack, secret="not-the-secret-0123456789abcdefghijklm").describe_dataset(DatasetArn=train)
    with pytest.raises(ClientError) as too_many:
        client.list_dataset_entries(DatasetArn=train, MaxResults=101)
    assert too_many.value.response["Error"]["Code"] == "ValidationException"

    # --- CreateDataset TEST, empty; DistributeDatasetEntries moves 20% into it.
    test = client.create_dataset(ProjectArn=project_arn, DatasetType="TEST")["DatasetArn"]
    assert client.describe_dataset(DatasetArn=test)["DatasetDescription"]["Status"] == "CREATE_COMPLETE"
    client.distribute_dataset_entries(Datasets=[{"Arn": train}, {"Arn": test}])
    statuses = {client.describe_dataset(DatasetArn=a)["DatasetDescription"]["Status"] for a in (train, test)}
    assert statuses == {"UPDATE_IN_PROGRESS"}
    train_done, test_done = wait_done(client, train, stack), wait_done(client, test, stack)
    assert train_done["Status"] == test_done["Status"] == "UPDATE_COMPLETE", (train_done, test_done)
    sides = check.datasets()
    assert sides["train"] | sides["test"] == refs and 1 <= len(sides["test"]) <= 3  # ~20%, per label
    assert train_done["DatasetStats"]["TotalEntries"] == len(sides["train"])
    assert test_done["DatasetStats"]["TotalEntries"] == len(sides["test"])
    check.wait_manifests(sides)

    # --- ListDatasetEntries (paginated) and ListDatasetLabels say what the manifest says.
    pages = client.get_paginator("list_dataset_entries").paginate(
        DatasetArn=train, PaginationConfig={"PageSize": 3}
    )
    entries = [json.loads(e) for page in pages for e in page["DatasetEntries"]]
    assert len(entries) == len(sides["train"]) and {e["source-ref"] for e in entries} == sides["train"]
    assert all(e["cl-metadata"] == {"is_labeled": True} for e in entries)
    published = check.manifest("train")
    assert all(labels_of(e) == labels_of(published[e["source-ref"]]) for e in entries)
    faces = client.list_dataset_entries(DatasetArn=train, ContainsLabels=["face"])["DatasetEntries"]
    assert {json.loads(e)["source-ref"] for e in faces} == {
        r for r in sides["train"] if "face" in labels_of(published[r])
    }
    label_pages = client.get_paginator("list_dataset_labels").paginate(
        DatasetArn=train, PaginationConfig={"PageSize": 1}
    )
    labels = {
        d["LabelName"]: d["LabelStats"] for page in label_pages for d in page["DatasetLabelDescriptions"]
    }
    for label in ("cat", "dog", "face"):
        assert labels[label]["EntryCount"] == sum(label in labels_of(o) for o in published.values())
    assert labels["face"]["BoundingBoxCount"] == len(faces)

    # --- UpdateDatasetEntries: one cat becomes a dog (its whole line replaced), one new image.
    cat = next(r for r in sorted(sides["train"]) if "/cat-" in r and "face" not in labels_of(published[r]))
    cat_name = cat.split("/", 3)[3]
    new = f"s3://{check.bucket}/photos/new.jpg"
    changes = manifest_lines(check.bucket, [cat_name], relabel={cat_name: "dog"})
    changes.append(line(new, cls_attr("animal", "cat")))
    client.update_dataset_entries(
        DatasetArn=train, Changes={"GroundTruth": "".join(json.dumps(c) + "\n" for c in changes).encode()}
    )
    assert client.describe_dataset(DatasetArn=train)["DatasetDescription"]["Status"] == "UPDATE_IN_PROGRESS"
    updated = wait_done(client, train, stack)
    assert updated["Status"] == "UPDATE_COMPLETE", updated
    assert updated["DatasetStats"]["TotalEntries"] == len(sides["train"]) + 1
    by_image = {t["data"]["image"]: t for t in check.tasks()}
    assert by_image[new]["data"]["dataset"] == "train"
    choices = [r["value"].get("choices") for a in by_image[cat]["annotations"] for r in a["result"]]
    assert ["dog"] in choices and ["cat"] not in choices
    check.wait_manifests({"train": sides["train"] | {new}, "test": sides["test"]})
    assert labels_of(check.manifest("train")[cat]) == {"dog"}

    # --- The AWS CLI works against the endpoint too.
    if shutil.which("aws"):
        cli_env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
                   "AWS_DEFAULT_REGION": REGION}  # fmt: skip
        done_cli = subprocess.run(
            ["aws", "rekognition", "describe-dataset", "--dataset-arn", test, "--endpoint-url", stack.url],
            capture_output=True, text=True, env=cli_env, timeout=60, check=False,
        )  # fmt: skip
        assert done_cli.returncode == 0, done_cli.stderr
        stats = json.loads(done_cli.stdout)["DatasetDescription"]["DatasetStats"]
        assert stats["TotalEntries"] == len(sides["test"])

    # --- DeleteDataset TEST: its tasks go, the ARN is gone; a bad manifest then fails with CLIENT_ERROR.
    client.delete_dataset(DatasetArn=test)
    wait_gone(client, test, stack)
    assert check.datasets() == {"train": sides["train"] | {new}, "test": set()}
    check.wait_manifests({"train": sides["train"] | {new}, "test": set()})
    bad = "manifests/bad.manifest"
    check.s3.put_object(Bucket=check.bucket, Key=bad, Body=b'{"source-ref": 1}\nnot json\n{}\n')
    retry = client.create_dataset(
        ProjectArn=project_arn,
        DatasetType="TEST",
        DatasetSource={"GroundTruthManifest": {"S3Object": {"Bucket": check.bucket, "Name": bad}}},
    )["DatasetArn"]
    assert retry != test
    failed = wait_done(client, retry, stack)
    assert (failed["Status"], failed["StatusMessageCode"]) == ("CREATE_FAILED", "CLIENT_ERROR"), failed
    assert "ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST" in failed["StatusMessage"]
    [described] = client.describe_projects(ProjectNames=[name])["ProjectDescriptions"]
    assert [(d["DatasetType"], d["Status"]) for d in described["Datasets"]] == [
        ("TRAIN", "UPDATE_COMPLETE"),
        ("TEST", "CREATE_FAILED"),
    ]

    # --- DeleteProject: the Label Studio project and our record go.
    assert client.delete_project(ProjectArn=project_arn)["Status"] == "DELETING"
    assert client.describe_projects(ProjectNames=[name])["ProjectDescriptions"] == []
    assert not [p for p in check.ls.client().projects.list(title=name) if p.title == name]
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_dataset(DatasetArn=train)
