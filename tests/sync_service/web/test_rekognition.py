"""The Rekognition-compatible endpoint's edge: SigV4, request shapes, errors, ARNs and the status machine.

Requests are signed with botocore's own signer and sent with the Flask test client; a few go through
boto3's ``rekognition`` client against the app served on loopback, to see the exception classes boto3
raises. Real Redis (the queue, the record cache) and moto's S3 server (the records); no Label Studio:
these tests stop where an operation would read or change tasks.
"""

from __future__ import annotations

import base64
import datetime
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue

from sync_service.config import Settings
from sync_service.domain.datasets import dataset_record
from sync_service.domain.projects import ProjectInfo, Projects
from sync_service.edges.s3 import Storage, client_for
from sync_service.edges.state import PROJECTS_KEY
from sync_service.web import awsjson
from sync_service.web.app import create_app
from tests import realparts
from tests.builders import service_settings

KEY_ID = "AKIDCUSTOMLABELSTEST"
SECRET = "a-secret-access-key-of-40-characters-xyz"
REGION = "eu-west-1"
ACCOUNT = "210987654321"
TARGET = "RekognitionService."


@pytest.fixture
def settings(redis_url: str, s3: realparts.S3, bucket: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    return service_settings(  # Label Studio's URL: nothing answers, no test here may reach it
        redis_url=redis_url,
        s3_endpoint=s3.endpoint_url,
        s3_region=s3.region,
        bucket=bucket,
        api_access_key_id=KEY_ID,
        api_secret_access_key=SECRET,
        api_account_id=ACCOUNT,
    )


@pytest.fixture
def redis(redis_url: str) -> Redis:
    return Redis.from_url(redis_url)


@pytest.fixture
def projects(settings: Settings, redis: Redis) -> Iterator[Projects]:
    made = Projects(redis, Storage(client_for(settings), settings.bucket), settings.prefix)
    yield made
    for info in made.scan():
        redis.hdel(PROJECTS_KEY, str(info.label_studio_project_id))
        redis.delete(*[f"cl:p:{info.label_studio_project_id}:stats:{d}" for d in ("train", "test")])


@pytest.fixture
def app(settings: Settings, redis: Redis, projects: Projects) -> Iterator[Flask]:
    yield create_app(settings, redis=redis)
    Queue(settings.queue, connection=redis).delete(delete_jobs=True)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def project(
    projects: Projects,
    name: str,
    *,
    datasets: dict[str, dict[str, Any]] | None = None,
    pid: int | None = None,
) -> ProjectInfo:
    """A project record of ours (no Label Studio project behind it)."""
    pid = pid or 900_000 + uuid.uuid4().int % 99_999
    info = ProjectInfo(
        label_studio_project_id=pid,
        title=name,
        slug=name.lower(),
        name=name,
        created=time.time(),
        datasets=datasets if datasets is not None else {},
    )
    projects.save(info)
    return info


def project_arn(info: ProjectInfo, region: str = REGION, account: str = ACCOUNT) -> str:
    return f"arn:aws:rekognition:{region}:{account}:project/{info.name}/{int(info.created * 1000)}"


def dataset_arn(info: ProjectInfo, dataset: str) -> str:
    assert info.datasets is not None
    created = int(info.datasets[dataset]["created"] * 1000)
    return f"arn:aws:rekognition:{REGION}:{ACCOUNT}:project/{info.name}/dataset/{dataset}/{created}"


def sign(
    operation: str,
    params: Any,
    *,
    key_id: str = KEY_ID,
    secret: str = SECRET,
    region: str = REGION,
    service: str = "rekognition",
    raw: bytes | None = None,
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a request signed by botocore as boto3 signs it (Host: localhost)."""
    body = raw if raw is not None else json.dumps(params).encode()
    request = AWSRequest(
        method="POST",
        url="http://localhost/",
        data=body,
        headers={"X-Amz-Target": TARGET + operation, "Content-Type": awsjson.CONTENT_TYPE},
    )
    botocore.auth.SigV4Auth(Credentials(key_id, secret), service, region).add_auth(request)
    return body, {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}


def post(
    client: FlaskClient, operation: str, params: Any = None, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    body, headers = sign(operation, params if params is not None else {}, **kwargs)
    response = client.post("/", data=body, headers=headers)
    return response.status_code, response.get_json(force=True)


def error_type(client: FlaskClient, operation: str, params: Any = None, **kwargs: Any) -> str:
    status, body = post(client, operation, params, **kwargs)
    assert status == 400, body
    return str(body["__type"])


# --- authentication ----------------------------------------------------------------------------------


def test_without_configured_credentials_every_request_is_refused(
    settings: Settings, redis: Redis, projects: Projects
) -> None:
    client = create_app(replace(settings, api_access_key_id=None, api_secret_access_key=None), redis=redis)
    body, headers = sign("DescribeProjects", {})
    response = client.test_client().post("/", data=body, headers=headers)
    assert response.status_code == 400
    assert response.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert response.headers["Content-Type"] == awsjson.CONTENT_TYPE
    assert response.get_json(force=True)["__type"] == "AccessDeniedException"


def test_a_well_signed_request_is_answered(client: FlaskClient) -> None:
    status, body = post(client, "DescribeProjects", {})
    assert (status, body) == (200, {"ProjectDescriptions": []})


def _tamper_body(client: FlaskClient) -> Any:
    body, headers = sign("DescribeProjects", {})
    return client.post("/", data=body.replace(b"{}", b'{"MaxResults": 1}'), headers=headers)


def _tamper_target(client: FlaskClient) -> Any:
    body, headers = sign("DescribeProjects", {})
    return client.post("/", data=body, headers={**headers, "X-Amz-Target": TARGET + "DeleteProject"})


def _unsigned(client: FlaskClient) -> Any:
    body, headers = sign("DescribeProjects", {})
    del headers["Authorization"]
    return client.post("/", data=body, headers=headers)


def _content_hash(client: FlaskClient) -> Any:
    request = AWSRequest(
        method="POST",
        url="http://localhost/",
        data=b"{}",
        headers={
            "X-Amz-Target": TARGET + "DescribeProjects",
            "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD",
        },
    )
    botocore.auth.SigV4Auth(Credentials(KEY_ID, SECRET), "rekognition", REGION).add_auth(request)
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    return client.post("/", data=b'{"MaxResults": 1}', headers=headers)


@pytest.mark.parametrize(
    "send",
    [
        _unsigned,
        _tamper_body,
        _tamper_target,
        _content_hash,
        lambda c: c.post("/", data=b"{}", headers=sign("DescribeProjects", {}, secret="x" * 40)[1]),
        lambda c: c.post("/", data=b"{}", headers=sign("DescribeProjects", {}, key_id="AKIDOTHER")[1]),
        lambda c: c.post("/", data=b"{}", headers=sign("DescribeProjects", {}, service="s3")[1]),
    ],
    ids=["unsigned", "body changed", "target changed", "content hash", "secret", "key id", "service"],
)
def test_requests_not_signed_with_our_key_are_refused(client: FlaskClient, send: Any) -> None:
    response = send(client)
    assert response.status_code == 400
    body = response.get_json(force=True)
    assert body["__type"] == "AccessDeniedException"
    assert response.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert SECRET not in body["Message"]


@pytest.mark.parametrize("minutes", [-16, 16])
def test_a_signature_more_than_15_minutes_off_is_refused(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, minutes: int
) -> None:
    when = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + datetime.timedelta(minutes=minutes)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when)
    status, body = post(client, "DescribeProjects", {})
    assert (status, body["__type"]) == (400, "AccessDeniedException")
    assert "expired" in body["Message"]


def test_a_signature_14_minutes_old_still_holds(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    when = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(minutes=14)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when)
    assert post(client, "DescribeProjects", {})[0] == 200


# --- protocol and shapes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "params", "expected", "says"),
    [
        ("DescribeProjects", {"MaxResults": 200}, "ValidationException", "less than or equal to 100"),
        ("DescribeProjects", {"MaxResults": 0}, "ValidationException", "greater than or equal to 1"),
        ("CreateProject", {"ProjectName": "bad name!"}, "ValidationException", "regular expression"),
        ("CreateProject", {}, "ValidationException", "'projectName' failed"),
        (
            "CreateDataset",
            {"ProjectArn": "arn:x", "DatasetType": "VALIDATION"},
            "ValidationException",
            "enum",
        ),
        ("DistributeDatasetEntries", {"Datasets": [{"Arn": "x" * 30}]}, "ValidationException", "length"),
        ("DescribeProjects", {"MaxResults": "10"}, "SerializationException", "integer"),
        ("DescribeDataset", {"DatasetArn": 7}, "SerializationException", "string"),
        ("DetectLabels", {}, "UnknownOperationException", "not implemented"),
        ("Nonsense", {}, "UnknownOperationException", "Unknown operation"),
    ],
)
def test_requests_are_checked_against_the_service_model(
    client: FlaskClient, operation: str, params: dict[str, Any], expected: str, says: str
) -> None:
    status, body = post(client, operation, params)
    assert (status, body["__type"]) == (400, expected), body
    assert says in body["Message"]


def test_a_body_over_8_mib_is_refused_in_aws_form(client: FlaskClient) -> None:
    status, body = post(client, "DescribeProjects", raw=b" " * (8 * 1024 * 1024 + 1))
    assert (status, body["__type"]) == (400, "ValidationException")


def test_secrets_never_reach_the_log(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    good, bad = sign("DescribeProjects", {}), sign("DescribeProjects", {}, secret="w" * 40)
    caplog.set_level("DEBUG")  # from here on: only what the service logs (botocore's signer included)
    for body, headers in (good, bad):
        client.post("/", data=body, headers=headers)
    signature = good[1]["Authorization"].rsplit("=", 1)[1]
    assert SECRET not in caplog.text and signature not in caplog.text
    assert "AccessDeniedException" in caplog.text


def test_a_body_that_is_not_json_is_a_serialization_error(client: FlaskClient) -> None:
    status, body = post(client, "DescribeProjects", raw=b"{not json")
    assert (status, body["__type"]) == (400, "SerializationException")


def test_ground_truth_must_be_base64_of_at_most_5_mib(client: FlaskClient, projects: Projects) -> None:
    info = project(projects, "blobs", datasets={"train": dataset_record()})
    arn = dataset_arn(info, "train")
    too_big = base64.b64encode(b"x" * (5 * 1024 * 1024 + 1)).decode()
    changes = {"DatasetArn": arn, "Changes": {"GroundTruth": too_big}}
    status, body = post(client, "UpdateDatasetEntries", changes)
    assert (status, body["__type"]) == (400, "ValidationException")
    assert "less than or equal to 5242880" in body["Message"]
    changes["Changes"]["GroundTruth"] = "not base64!"
    assert error_type(client, "UpdateDatasetEntries", changes) == "SerializationException"


def test_responses_are_checked_against_the_output_shape() -> None:
    operation = awsjson.operation("DescribeDataset")
    good = {"DatasetDescription": {"Status": "CREATE_COMPLETE", "CreationTimestamp": 1.5}}
    assert awsjson.output_problems(operation, good) == []
    bad = {"DatasetDescription": {"Status": "DONE", "Extra": 1, "DatasetStats": {"TotalEntries": -1}}}
    problems = " | ".join(awsjson.output_problems(operation, bad))
    assert "enum" in problems and "'datasetDescription.extra' is not a member" in problems
    assert "greater than or equal to 0" in problems


# --- ARNs, projects and datasets -----------------------------------------------------------------------


def test_describe_projects_shows_arns_datasets_and_pages(client: FlaskClient, projects: Projects) -> None:
    first = project(projects, "cats", datasets={"train": dataset_record()})
    second = project(projects, "dogs", datasets={})
    status, body = post(client, "DescribeProjects", {"MaxResults": 1})
    assert status == 200 and "NextToken" in body
    [described] = body["ProjectDescriptions"]
    assert described["ProjectArn"] == project_arn(first)
    assert described["Status"] == "CREATED" and described["Feature"] == "CUSTOM_LABELS"
    [metadata] = described["Datasets"]
    assert metadata["DatasetArn"] == dataset_arn(first, "train")
    assert (metadata["DatasetType"], metadata["Status"]) == ("TRAIN", "CREATE_COMPLETE")
    _, rest = post(client, "DescribeProjects", {"MaxResults": 1, "NextToken": body["NextToken"]})
    assert [p["ProjectArn"] for p in rest["ProjectDescriptions"]] == [project_arn(second)]
    assert "NextToken" not in rest
    _, named = post(client, "DescribeProjects", {"ProjectNames": ["dogs"]})
    assert [p["ProjectArn"] for p in named["ProjectDescriptions"]] == [project_arn(second)]
    assert (
        error_type(client, "DescribeProjects", {"NextToken": "bm9wZQ=="}) == "InvalidPaginationTokenException"
    )
    moderation = post(client, "DescribeProjects", {"Features": ["CONTENT_MODERATION"]})[1]
    assert moderation == {"ProjectDescriptions": []}


def test_unknown_arns_are_not_found(client: FlaskClient, projects: Projects) -> None:
    info = project(projects, "cats", datasets={"train": dataset_record()})
    gone = dataset_arn(info, "train").rsplit("/", 1)[0] + "/1"
    assert error_type(client, "DescribeDataset", {"DatasetArn": gone}) == "ResourceNotFoundException"
    test_arn = dataset_arn(info, "train").replace("/train/", "/test/")
    assert error_type(client, "DescribeDataset", {"DatasetArn": test_arn}) == "ResourceNotFoundException"
    for other in (project_arn(info, region="us-west-2"), project_arn(info, account="111122223333")):
        params = {"ProjectArn": other, "DatasetType": "TEST"}
        assert error_type(client, "CreateDataset", params) == "ResourceNotFoundException"


def test_create_dataset_checks_its_source_and_the_one_dataset_per_type(
    client: FlaskClient, projects: Projects
) -> None:
    info = project(projects, "cats", datasets={"train": dataset_record()})
    arn = project_arn(info)
    both = {
        "GroundTruthManifest": {"S3Object": {"Bucket": "bkt", "Name": "m.manifest"}},
        "DatasetArn": dataset_arn(info, "train"),
    }
    for source in (both, {}):
        params = {"ProjectArn": arn, "DatasetType": "TEST", "DatasetSource": source}
        assert error_type(client, "CreateDataset", params) == "InvalidParameterException"
    params = {"ProjectArn": arn, "DatasetType": "TRAIN"}
    assert error_type(client, "CreateDataset", params) == "ResourceAlreadyExistsException"
    copy = {
        "ProjectArn": arn,
        "DatasetType": "TEST",
        "DatasetSource": {"DatasetArn": dataset_arn(info, "train")},
    }
    assert error_type(client, "CreateDataset", copy) == "InvalidParameterException"  # same project


def test_a_dataset_source_naming_both_or_neither_is_an_invalid_parameter_for_boto3(
    client: FlaskClient, endpoint: str, projects: Projects
) -> None:
    info = project(projects, "cats", datasets={"train": dataset_record()})
    boto = rekognition(endpoint)
    manifest = {"GroundTruthManifest": {"S3Object": {"Bucket": "bkt", "Name": "m.manifest"}}}
    for source in ({}, {**manifest, "DatasetArn": dataset_arn(info, "train")}):
        with pytest.raises(boto.exceptions.InvalidParameterException) as refused:
            boto.create_dataset(ProjectArn=project_arn(info), DatasetType="TEST", DatasetSource=source)
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "exactly one of GroundTruthManifest and DatasetArn" in str(refused.value)
    # Members sent as null are absent: still neither.
    params = {"ProjectArn": project_arn(info), "DatasetType": "TEST"}
    nulls = {**params, "DatasetSource": {"GroundTruthManifest": None, "DatasetArn": None}}
    assert error_type(client, "CreateDataset", nulls) == "InvalidParameterException"
    # No DatasetSource at all: an empty dataset.
    assert "/dataset/test/" in boto.create_dataset(**params)["DatasetArn"]
    record = (projects.find(info.label_studio_project_id) or info).datasets or {}
    assert record["test"]["status"] == "CREATE_COMPLETE"


def test_an_empty_dataset_is_complete_at_once(client: FlaskClient, projects: Projects) -> None:
    info = project(projects, "cats")
    status, body = post(client, "CreateDataset", {"ProjectArn": project_arn(info), "DatasetType": "TEST"})
    assert status == 200
    assert body["DatasetArn"].startswith(f"arn:aws:rekognition:{REGION}:{ACCOUNT}:project/cats/dataset/test/")
    record = (projects.find(info.label_studio_project_id) or info).datasets or {}
    assert record["test"]["status"] == "CREATE_COMPLETE"
    assert body["DatasetArn"] == dataset_arn(projects.find(info.label_studio_project_id) or info, "test")


def test_long_operations_answer_in_progress_and_queue_a_job(
    client: FlaskClient, projects: Projects, settings: Settings, redis: Redis
) -> None:
    info = project(projects, "cats")
    manifest = {"GroundTruthManifest": {"S3Object": {"Bucket": settings.bucket, "Name": "m.manifest"}}}
    params = {"ProjectArn": project_arn(info), "DatasetType": "TRAIN", "DatasetSource": manifest}
    status, body = post(client, "CreateDataset", params)
    assert status == 200
    arn = body["DatasetArn"]
    queue = Queue(settings.queue, connection=redis)
    assert [job.func_name for job in queue.jobs] == ["sync_service.jobs.datasets.create_dataset_job"]
    status, described = post(client, "DescribeDataset", {"DatasetArn": arn})
    assert status == 200
    description = described["DatasetDescription"]
    assert description["Status"] == "CREATE_IN_PROGRESS"
    assert description["DatasetStats"] == {
        "LabeledEntries": 0,
        "TotalEntries": 0,
        "TotalLabels": 0,
        "ErrorEntries": 0,
    }
    # While it is being created: not listable, not changeable, not deletable.
    assert error_type(client, "ListDatasetEntries", {"DatasetArn": arn}) == "ResourceNotReadyException"
    assert error_type(client, "ListDatasetLabels", {"DatasetArn": arn}) == "ResourceNotReadyException"
    update = {"DatasetArn": arn, "Changes": {"GroundTruth": base64.b64encode(b"{}").decode()}}
    assert error_type(client, "UpdateDatasetEntries", update) == "ResourceInUseException"
    assert error_type(client, "DeleteDataset", {"DatasetArn": arn}) == "ResourceInUseException"
    assert error_type(client, "DeleteProject", {"ProjectArn": project_arn(info)}) == "ResourceInUseException"
    empty = post(client, "CreateDataset", {"ProjectArn": project_arn(info), "DatasetType": "TEST"})[1]
    distribute = {"Datasets": [{"Arn": arn}, {"Arn": empty["DatasetArn"]}]}
    assert error_type(client, "DistributeDatasetEntries", distribute) == "ResourceNotReadyException"
    assert error_type(client, "DistributeDatasetEntries", {"Datasets": [{"Arn": arn}, {"Arn": arn}]}) == (
        "InvalidParameterException"
    )
    assert queue.count == 1


def test_delete_dataset_answers_delete_in_progress(
    client: FlaskClient, projects: Projects, settings: Settings, redis: Redis
) -> None:
    info = project(projects, "cats", datasets={"train": dataset_record(), "test": dataset_record()})
    arn = dataset_arn(info, "test")
    assert post(client, "DeleteDataset", {"DatasetArn": arn}) == (200, {})
    described = post(client, "DescribeDataset", {"DatasetArn": arn})[1]["DatasetDescription"]
    assert described["Status"] == "DELETE_IN_PROGRESS"
    [job] = Queue(settings.queue, connection=redis).jobs
    assert job.args == (info.label_studio_project_id, "test", ["CREATE_COMPLETE", "", "SUCCESS"])


def test_a_project_recorded_before_datasets_has_both(client: FlaskClient, projects: Projects) -> None:
    legacy = project(projects, "old")
    projects.save(replace(legacy, datasets=None))
    described = post(client, "DescribeProjects", {"ProjectNames": ["old"]})[1]["ProjectDescriptions"][0]
    assert [d["DatasetType"] for d in described["Datasets"]] == ["TRAIN", "TEST"]
    assert post(client, "DeleteDataset", {"DatasetArn": described["Datasets"][1]["DatasetArn"]})[0] == 200
    after = projects.find(legacy.label_studio_project_id)
    assert after is not None and after.datasets is not None
    assert after.datasets["train"]["status"] == "CREATE_COMPLETE"
    assert after.datasets["test"]["status"] == "DELETE_IN_PROGRESS"


# --- through boto3 -----------------------------------------------------------------------------------


@pytest.fixture
def endpoint(app: Flask) -> Iterator[str]:
    with realparts.served(app) as url:
        yield url


def rekognition(endpoint: str, *, secret: str = SECRET) -> Any:
    return boto3.client(
        "rekognition",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


def test_boto3_raises_the_modeled_exception_classes(endpoint: str, projects: Projects) -> None:
    info = project(projects, "cats", datasets={"train": dataset_record()})
    client = rekognition(endpoint)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_dataset(DatasetArn=dataset_arn(info, "train").rsplit("/", 1)[0] + "/1")
    with pytest.raises(client.exceptions.ResourceAlreadyExistsException):
        client.create_dataset(ProjectArn=project_arn(info), DatasetType="TRAIN")
    with pytest.raises(client.exceptions.InvalidParameterException):
        client.create_dataset(
            ProjectArn=project_arn(info),
            DatasetType="TEST",
            DatasetSource={
                "GroundTruthManifest": {"S3Object": {"Bucket": "bkt", "Name": "m.manifest"}},
                "DatasetArn": dataset_arn(info, "train"),
            },
        )
    with pytest.raises(ClientError) as too_many:
        client.describe_projects(MaxResults=101)
    assert too_many.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(rekognition(endpoint).exceptions.AccessDeniedException):
        rekognition(endpoint, secret="w" * 40).describe_projects()
    pages = list(client.get_paginator("describe_projects").paginate(PaginationConfig={"PageSize": 1}))
    assert [p["ProjectArn"] for page in pages for p in page["ProjectDescriptions"]] == [project_arn(info)]
    created = client.describe_projects()["ProjectDescriptions"][0]["CreationTimestamp"]
    assert isinstance(created, datetime.datetime)
