"""The Rekognition-compatible endpoint: AWS JSON 1.1 on ``POST /`` with ``X-Amz-Target:
RekognitionService.<Operation>``, so that boto3's ``rekognition`` client and ``aws rekognition ...
--endpoint-url`` work against this service unchanged.

Operations: CreateProject, DescribeProjects, DeleteProject, CreateDataset, DescribeDataset,
ListDatasetEntries, ListDatasetLabels, UpdateDatasetEntries, DistributeDatasetEntries, DeleteDataset.

This module parses, checks and renders only: the SigV4 signature (:mod:`sync_service.web.sigv4`) with the
one key pair configured (``CUSTOMLABELS_API_ACCESS_KEY_ID`` / ``..._SECRET_ACCESS_KEY``; none
configured: every request is refused), the request and response shapes (:mod:`sync_service.web.awsjson`,
from botocore's service model), and ARNs. The work is :class:`sync_service.domain.datasets.Datasets`, and for the
asynchronous operations :mod:`sync_service.jobs.datasets`.

ARNs: ``arn:aws:rekognition:<region>:<account>:project/<ProjectName>/<ms>`` and
``arn:aws:rekognition:<region>:<account>:project/<ProjectName>/dataset/(train|test)/<ms>``, where
region is the one the request was signed for (every region sees the same projects, each with ARNs of
its own region), account is ``CUSTOMLABELS_API_ACCOUNT_ID`` and ``<ms>`` the project's or dataset's
creation time in milliseconds (so a deleted and re-created dataset has a new ARN).

Redis, S3 or Label Studio away (:data:`sync_service.web.app.UNAVAILABLE`): 503
``ServiceUnavailableException`` with ``Retry-After`` (seconds) and ``x-amz-retry-after`` (milliseconds,
what botocore's standard retry mode waits for), and one warning line naming the part; any other
unexpected exception is a bug: 500 ``InternalServerError`` and its traceback in the log.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from flask import Blueprint, Response, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from sync_service.domain.bootstrap import create_project, delete_project, label_studio
from sync_service.domain.datasets import (
    DATASETS,
    DatasetError,
    Datasets,
    _make_token,
    _read_token,
    invalid,
    not_found,
)
from sync_service.domain.projects import ProjectInfo
from sync_service.domain.status import IN_PROGRESS
from sync_service.jobs.datasets import DatasetJobs
from sync_service.web import awsjson, ext
from sync_service.web.awsjson import AwsError
from sync_service.web.sigv4 import SignatureError, Signer, verify
from sync_service.web.unavailable import RETRY_AFTER_SECONDS, UNAVAILABLE

log = logging.getLogger(__name__)
bp = Blueprint("rekognition", __name__)

TARGET_PREFIX = "RekognitionService."
MAX_REQUEST_BYTES = 8 * 1024 * 1024  # UpdateDatasetEntries' 5 MiB GroundTruth, base64, in JSON
DEFAULT_PAGE = 100
CUSTOM_LABELS = "CUSTOM_LABELS"
_ARN_HEAD = r"arn:[a-z\d-]+:rekognition:(?P<region>[a-z\d-]+):(?P<account>\d{12}):project/(?P<name>[a-zA-Z0-9_.\-]{1,255})"
PROJECT_ARN = re.compile(_ARN_HEAD + r"/(?P<ms>[0-9]+)")
DATASET_ARN = re.compile(_ARN_HEAD + r"/dataset/(?P<dataset>train|test)/(?P<ms>[0-9]+)")
_AWAY: tuple[type[Exception], ...] = tuple(UNAVAILABLE)  # answered 503, not 500


@bp.post("/")
def call() -> Response:
    """One AWS JSON 1.1 request: authenticate, check the input shape, run, check the output shape."""
    request_id = str(uuid.uuid4())
    g.rekognition_operation = "?"
    try:
        return _respond(200, _dispatch(request_id), request_id)
    except AwsError as exc:
        return _error(exc, request_id)
    except DatasetError as exc:
        return _error(AwsError(exc.exception, str(exc)), request_id)
    except RequestEntityTooLarge:
        return _error(
            AwsError("ValidationException", f"The request is larger than {MAX_REQUEST_BYTES} bytes."),
            request_id,
        )
    except _AWAY as exc:
        return _unavailable(exc, request_id)
    except Exception:
        log.exception("%s failed (request %s)", g.rekognition_operation, request_id)
        return _error(
            AwsError("InternalServerError", f"An internal error occurred (request {request_id})."), request_id
        )


def _dispatch(request_id: str) -> dict[str, Any]:
    request.max_content_length = MAX_REQUEST_BYTES
    body = request.get_data(cache=False)
    signer = _authenticate(body)
    target = request.headers.get("X-Amz-Target", "")
    if not target.startswith(TARGET_PREFIX):
        raise AwsError("UnknownOperationException", f"X-Amz-Target must be {TARGET_PREFIX}<Operation>.")
    name = g.rekognition_operation = target[len(TARGET_PREFIX) :]
    operation = awsjson.operation(name)
    handler = HANDLERS.get(name)
    if handler is None:
        raise AwsError(
            "UnknownOperationException",
            f"{name} is not implemented by this service; it implements {', '.join(HANDLERS)}.",
        )
    params = awsjson.check_input(operation, _parse(body))
    document = handler(Api(signer), params)
    problems = awsjson.output_problems(operation, document)
    if problems:
        log.error("%s response breaks the output shape (request %s): %s", name, request_id, problems)
        raise AwsError("InternalServerError", f"The response broke the service model (request {request_id}).")
    return document


def _authenticate(body: bytes) -> Signer:
    settings = ext.settings()
    if not (settings.api_access_key_id and settings.api_secret_access_key):
        raise AwsError(
            "AccessDeniedException",
            "This endpoint has no API credentials configured "
            "(CUSTOMLABELS_API_ACCESS_KEY_ID, CUSTOMLABELS_API_SECRET_ACCESS_KEY): every request is refused.",
        )
    try:
        return verify(
            method=request.method,
            path=request.path,
            query=request.query_string.decode("latin-1"),
            headers={key.lower(): value for key, value in request.headers.items()},
            body=body,
            access_key_id=settings.api_access_key_id,
            secret_access_key=settings.api_secret_access_key,
            service=awsjson.SERVICE,
        )
    except SignatureError as exc:
        raise AwsError("AccessDeniedException", str(exc)) from None


def _parse(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise AwsError("SerializationException", "The request body is not valid JSON.") from None
    if not isinstance(document, dict):
        raise AwsError("SerializationException", "The request body must be a JSON object.")
    return document


def _respond(status: int, document: dict[str, Any], request_id: str) -> Response:
    response = Response(orjson.dumps(document), status=status, content_type=awsjson.CONTENT_TYPE)
    response.headers["x-amzn-RequestId"] = request_id
    return response


def _error(exc: AwsError, request_id: str) -> Response:
    log.info("%s -> %s: %s (request %s)", g.rekognition_operation, exc.type, exc.message, request_id)
    return _render(exc, request_id)


def _render(exc: AwsError, request_id: str) -> Response:
    response = _respond(exc.status, exc.body(), request_id)
    response.headers["x-amzn-ErrorType"] = exc.type
    return response


def _unavailable(exc: Exception, request_id: str) -> Response:
    """503 ServiceUnavailableException with the retry hints, and one warning line: the operation, the part
    and the exception's class only (its text may quote a bucket key or a host), no traceback."""
    part = next(name for kind, name in UNAVAILABLE.items() if isinstance(exc, kind))
    log.warning(
        "%s: %s is unavailable (%s); answered 503 (request %s)",
        g.rekognition_operation,
        part,
        type(exc).__name__,
        request_id,
    )
    error = AwsError(
        awsjson.SERVICE_UNAVAILABLE, f"{part} is unavailable; try again later (request {request_id})."
    )
    response = _render(error, request_id)
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response.headers["x-amz-retry-after"] = str(RETRY_AFTER_SECONDS * 1000)
    return response


def _page(items: list[Any], token: str | None, size: int, filters: list[Any]) -> tuple[list[Any], str | None]:
    """One page of ``items`` from ``token`` (None: the first), and the next page's token."""
    key = orjson.dumps(filters)
    start = _read_token(token, key)
    end = start + size
    return items[start:end], _make_token(end, key) if end < len(items) else None


def _paged(document: dict[str, Any], token: str | None) -> dict[str, Any]:
    if token:
        document["NextToken"] = token
    return document


class Api:
    """The operations for one authenticated request (its region makes the ARNs)."""

    def __init__(self, signer: Signer) -> None:
        self.settings = ext.settings()
        self.region = signer.region
        self.ctx = ext.context()
        self.ops = Datasets(self.ctx)
        self.jobs = DatasetJobs(self.ops, ext.queue())

    # ------------------------------------------------------------------------------------------ ARNs

    def _arn_head(self, info: ProjectInfo) -> str:
        return f"arn:aws:rekognition:{self.region}:{self.settings.api_account_id}:project/{info.project_name}"

    def project_arn(self, info: ProjectInfo) -> str:
        """The project's ARN."""
        return f"{self._arn_head(info)}/{_ms(info.created)}"

    def dataset_arn(self, info: ProjectInfo, dataset: str, record: dict[str, Any]) -> str:
        """The dataset's ARN."""
        return f"{self._arn_head(info)}/dataset/{dataset}/{_ms(record['created'])}"

    def _ours(self, match: re.Match[str] | None, arn: str) -> re.Match[str]:
        if (
            match is None
            or match["region"] != self.region
            or match["account"] != self.settings.api_account_id
        ):
            raise not_found(f"The resource {arn} cannot be found.")
        return match

    def project(self, arn: str) -> ProjectInfo:
        """The project of a project ARN; ResourceNotFoundException when there is none."""
        match = self._ours(PROJECT_ARN.fullmatch(arn), arn)
        for info in self.ctx.projects.named(match["name"]):
            if _ms(info.created) == int(match["ms"]):
                return info
        raise not_found(f"The project {arn} cannot be found.")

    def dataset(self, arn: str) -> tuple[ProjectInfo, str, dict[str, Any]]:
        """The project, dataset (``train``/``test``) and record of a dataset ARN."""
        match = self._ours(DATASET_ARN.fullmatch(arn), arn)
        dataset = match["dataset"]
        for info in self.ctx.projects.named(match["name"]):
            record = self.jobs.status.record(info, dataset)
            if record is not None and _ms(record["created"]) == int(match["ms"]):
                return info, dataset, record
        raise not_found(f"The dataset {arn} cannot be found.")

    # ------------------------------------------------------------------------------------ projects

    def create_project(self, params: dict[str, Any]) -> dict[str, Any]:
        """CreateProject: a Label Studio project titled ``ProjectName``, with no dataset yet."""

        name = params["ProjectName"]
        if params.get("Feature", CUSTOM_LABELS) != CUSTOM_LABELS:
            raise invalid("This service makes Custom Labels projects only (Feature CUSTOM_LABELS).")
        if params.get("AutoUpdate") == "ENABLED":
            raise invalid("AutoUpdate applies to adapters (CONTENT_MODERATION projects) only.")
        if self.ctx.projects.named(name):
            raise DatasetError("ResourceInUseException", f"A project named {name} already exists.")
        title = name if len(name) >= 3 else f"Rekognition project {name}"  # Label Studio wants 3+
        if label_studio(self.settings).project_by_title(title) is not None:
            raise DatasetError("ResourceInUseException", f"A Label Studio project titled {title!r} exists.")
        key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        made = create_project(
            self.settings,
            self.ctx.projects,
            title=title,
            name=name,
            datasets=(),
            s3_credentials=(key, secret) if key and secret else None,
        )
        return {"ProjectArn": self.project_arn(made.info)}

    def describe_projects(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeProjects: every project of ours, oldest first, with its datasets."""
        names, features = params.get("ProjectNames"), params.get("Features")
        infos = sorted(self.ctx.projects.scan(), key=lambda i: (i.created, i.label_studio_project_id))
        if names:
            infos = [info for info in infos if info.project_name in names]
        if features is not None and CUSTOM_LABELS not in features:
            infos = []
        page, token = _page(
            infos,
            params.get("NextToken"),
            params.get("MaxResults", DEFAULT_PAGE),
            ["projects", names, features],
        )
        return _paged({"ProjectDescriptions": [self._describe_project(info) for info in page]}, token)

    def _describe_project(self, info: ProjectInfo) -> dict[str, Any]:
        datasets = []
        for dataset in DATASETS:
            record = self.jobs.status.record(info, dataset)
            if record is None:
                continue
            metadata = {
                "CreationTimestamp": record["created"],
                "DatasetType": dataset.upper(),
                "DatasetArn": self.dataset_arn(info, dataset, record),
                "Status": record["status"],
                "StatusMessageCode": record.get("status_code") or "SUCCESS",
            }
            if record.get("status_message"):
                metadata["StatusMessage"] = record["status_message"]
            datasets.append(metadata)
        return {
            "ProjectArn": self.project_arn(info),
            "CreationTimestamp": info.created,
            "Status": "CREATED",
            "Datasets": datasets,
            "Feature": CUSTOM_LABELS,
        }

    def delete_project(self, params: dict[str, Any]) -> dict[str, Any]:
        """DeleteProject: the Label Studio project and our records (images and snapshots stay in S3);
        ResourceInUseException while one of its datasets is in progress."""

        info = self.project(params["ProjectArn"])
        pid = info.label_studio_project_id
        with self.ctx.projects.lock(pid):
            info = self.jobs.status.fresh(pid)
            for dataset in DATASETS:
                record = self.jobs.status.record(info, dataset)
                if record is not None and record["status"] in IN_PROGRESS:
                    raise DatasetError(
                        "ResourceInUseException", f"The {dataset.upper()} dataset is {record['status']}."
                    )
            delete_project(self.settings, self.ctx.projects, info)
        self.jobs.forget(pid)
        return {"Status": "DELETING"}

    # ------------------------------------------------------------------------------------ datasets

    def create_dataset(self, params: dict[str, Any]) -> dict[str, Any]:
        """CreateDataset: empty, from a Ground Truth manifest in S3, or a copy of another dataset."""
        info = self.project(params["ProjectArn"])
        dataset = params["DatasetType"].lower()
        manifest: dict[str, str] | None = None
        copy_of: tuple[ProjectInfo, str] | None = None
        source = params.get("DatasetSource")
        if source is not None:
            ground_truth, other = source.get("GroundTruthManifest"), source.get("DatasetArn")
            if (ground_truth is None) == (other is None):
                raise invalid("DatasetSource takes exactly one of GroundTruthManifest and DatasetArn.")
            if ground_truth is not None:
                if not ground_truth.get("S3Object"):
                    raise invalid("GroundTruthManifest needs an S3Object (Bucket, Name).")
                manifest = ground_truth["S3Object"]
                self.ops.sources.check(f"s3://{manifest.get('Bucket', '')}/{manifest.get('Name', '')}")
            else:
                other_info, other_dataset, _ = self.dataset(other)
                copy_of = (other_info, other_dataset)
        record = self.jobs.create(info, dataset, manifest=manifest, copy_of=copy_of)
        return {"DatasetArn": self.dataset_arn(info, dataset, record)}

    def describe_dataset(self, params: dict[str, Any]) -> dict[str, Any]:
        """DescribeDataset: the last operation's status and the dataset's stats."""
        info, dataset, record = self.dataset(params["DatasetArn"])
        description = {
            "CreationTimestamp": record["created"],
            "LastUpdatedTimestamp": record.get("updated", record["created"]),
            "Status": record["status"],
            "StatusMessageCode": record.get("status_code") or "SUCCESS",
            "DatasetStats": self.jobs.stats(info, dataset, record),
        }
        if record.get("status_message"):
            description["StatusMessage"] = record["status_message"]
        return {"DatasetDescription": description}

    def list_dataset_entries(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListDatasetEntries: the entries' JSON lines, filtered and paginated."""
        info, dataset, record = self.dataset(params["DatasetArn"])
        self.jobs.readable(dataset, record)
        lines, token = self.ops.list_entries(
            info,
            dataset,
            contains_labels=params.get("ContainsLabels"),
            labeled=params.get("Labeled"),
            source_ref_contains=params.get("SourceRefContains"),
            has_errors=params.get("HasErrors"),
            next_token=params.get("NextToken"),
            max_results=params.get("MaxResults", DEFAULT_PAGE),
        )
        return _paged({"DatasetEntries": lines}, token)

    def list_dataset_labels(self, params: dict[str, Any]) -> dict[str, Any]:
        """ListDatasetLabels: each label with its entry count (and box count when it has boxes)."""
        info, dataset, record = self.dataset(params["DatasetArn"])
        self.jobs.readable(dataset, record)
        page, token = _page(
            self.ops.labels(info, dataset),
            params.get("NextToken"),
            params.get("MaxResults", DEFAULT_PAGE),
            ["labels", dataset],
        )
        descriptions = []
        for label in page:
            stats = {"EntryCount": label.entries}
            if label.boxes:
                stats["BoundingBoxCount"] = label.boxes
            descriptions.append({"LabelName": label.name, "LabelStats": stats})
        return _paged({"DatasetLabelDescriptions": descriptions}, token)

    def update_dataset_entries(self, params: dict[str, Any]) -> dict[str, Any]:
        """UpdateDatasetEntries: queued; the GroundTruth lines arrive decoded from base64."""
        info, dataset, _ = self.dataset(params["DatasetArn"])
        self.jobs.update(info, dataset, params["Changes"]["GroundTruth"])
        return {}

    def distribute_dataset_entries(self, params: dict[str, Any]) -> dict[str, Any]:
        """DistributeDatasetEntries: the training and test datasets of one project, queued."""
        found = [self.dataset(item["Arn"]) for item in params["Datasets"]]
        if len({info.label_studio_project_id for info, _, _ in found}) != 1:
            raise invalid("The training and test datasets must belong to the same project.")
        if sorted(dataset for _, dataset, _ in found) != sorted(DATASETS):
            raise invalid("Give one training and one test dataset.")
        self.jobs.distribute(found[0][0])
        return {}

    def delete_dataset(self, params: dict[str, Any]) -> dict[str, Any]:
        """DeleteDataset: queued; the ARN is gone (ResourceNotFoundException) once it is done."""
        info, dataset, _ = self.dataset(params["DatasetArn"])
        self.jobs.delete(info, dataset)
        return {}


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


HANDLERS: dict[str, Callable[[Api, dict[str, Any]], dict[str, Any]]] = {
    "CreateProject": Api.create_project,
    "DescribeProjects": Api.describe_projects,
    "DeleteProject": Api.delete_project,
    "CreateDataset": Api.create_dataset,
    "DescribeDataset": Api.describe_dataset,
    "ListDatasetEntries": Api.list_dataset_entries,
    "ListDatasetLabels": Api.list_dataset_labels,
    "UpdateDatasetEntries": Api.update_dataset_entries,
    "DistributeDatasetEntries": Api.distribute_dataset_entries,
    "DeleteDataset": Api.delete_dataset,
}
