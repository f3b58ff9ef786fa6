"""Rekognition Custom Labels error and warning codes with their messages, and the limits behind them.

Messages are Rekognition's own wording (spec: shared/spec/rekognition.md §2.5); ``DUPLICATE_SOURCE_REF``
is ours (spec §9.3), since Rekognition drops a duplicate line without a word.
"""

from __future__ import annotations

from dataclasses import dataclass

# Non-terminal JSON-line errors (spec §2.5 c).
ERROR_MISSING_SOURCE_REF = "ERROR_MISSING_SOURCE_REF"
ERROR_INVALID_SOURCE_REF_FORMAT = "ERROR_INVALID_SOURCE_REF_FORMAT"
ERROR_NO_LABEL_ATTRIBUTES = "ERROR_NO_LABEL_ATTRIBUTES"
ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT = "ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT"
ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT = "ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT"
ERROR_NO_VALID_LABEL_ATTRIBUTES = "ERROR_NO_VALID_LABEL_ATTRIBUTES"
ERROR_MISSING_BOUNDING_BOX_CONFIDENCE = "ERROR_MISSING_BOUNDING_BOX_CONFIDENCE"
ERROR_MISSING_CLASS_MAP_ID = "ERROR_MISSING_CLASS_MAP_ID"
ERROR_INVALID_JSON_LINE = "ERROR_INVALID_JSON_LINE"
ERROR_INVALID_IMAGE = "ERROR_INVALID_IMAGE"
ERROR_INVALID_IMAGE_DIMENSION = "ERROR_INVALID_IMAGE_DIMENSION"
ERROR_INVALID_BOUNDING_BOX = "ERROR_INVALID_BOUNDING_BOX"
ERROR_BOUNDING_BOX_TOO_SMALL = "ERROR_BOUNDING_BOX_TOO_SMALL"
ERROR_TOO_MANY_BOUNDING_BOXES = "ERROR_TOO_MANY_BOUNDING_BOXES"
ERROR_NO_VALID_ANNOTATIONS = "ERROR_NO_VALID_ANNOTATIONS"
ERROR_UNSUPPORTED_USE_CASE_TYPE = "ERROR_UNSUPPORTED_USE_CASE_TYPE"
ERROR_INVALID_LABEL_NAME_LENGTH = "ERROR_INVALID_LABEL_NAME_LENGTH"
DUPLICATE_SOURCE_REF = "DUPLICATE_SOURCE_REF"

# Warnings: the line is valid but not used for training.
WARNING_UNANNOTATED_RECORD = "WARNING_UNANNOTATED_RECORD"
WARNING_NO_ANNOTATIONS = "WARNING_NO_ANNOTATIONS"
WARNING_NO_ATTRIBUTE_ANNOTATIONS = "WARNING_NO_ATTRIBUTE_ANNOTATIONS"

# Manifest file and content errors (spec §2.5 a, b).
ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT = "ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT"
ERROR_MANIFEST_SIZE_TOO_LARGE = "ERROR_MANIFEST_SIZE_TOO_LARGE"
ERROR_MANIFEST_ROWS_EXCEEDS_MAXIMUM = "ERROR_MANIFEST_ROWS_EXCEEDS_MAXIMUM"
ERROR_EMPTY_MANIFEST = "ERROR_EMPTY_MANIFEST"
ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST = "ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST"
ERROR_IMAGES_IN_MULTIPLE_S3_BUCKETS = "ERROR_IMAGES_IN_MULTIPLE_S3_BUCKETS"
ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_AUTOSPLIT = "ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_AUTOSPLIT"
ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE = "ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE"
ERROR_MANIFEST_TOO_FEW_LABELS = "ERROR_MANIFEST_TOO_FEW_LABELS"
ERROR_MANIFEST_TOO_MANY_LABELS = "ERROR_MANIFEST_TOO_MANY_LABELS"
ERROR_INSUFFICIENT_LABEL_OVERLAP = "ERROR_INSUFFICIENT_LABEL_OVERLAP"
ERROR_MANIFEST_TOO_FEW_USABLE_LABELS = "ERROR_MANIFEST_TOO_FEW_USABLE_LABELS"
ERROR_INSUFFICIENT_USABLE_LABEL_OVERLAP = "ERROR_INSUFFICIENT_USABLE_LABEL_OVERLAP"
ERROR_TOO_MANY_RECORDS_IN_ERROR = "ERROR_TOO_MANY_RECORDS_IN_ERROR"
# These need S3 itself (permissions, owners, copies) and are raised by the S3 edge, not by the pure core.
ERROR_INVALID_PERMISSIONS_MANIFEST_S3_BUCKET = "ERROR_INVALID_PERMISSIONS_MANIFEST_S3_BUCKET"
ERROR_INVALID_PERMISSIONS_IMAGES_S3_BUCKET = "ERROR_INVALID_PERMISSIONS_IMAGES_S3_BUCKET"
ERROR_INVALID_IMAGES_S3_BUCKET_OWNER = "ERROR_INVALID_IMAGES_S3_BUCKET_OWNER"
ERROR_FAILED_IMAGES_S3_COPY = "ERROR_FAILED_IMAGES_S3_COPY"
ERROR_CANNOT_WRITE_OUTPUT_S3_BUCKET = "ERROR_CANNOT_WRITE_OUTPUT_S3_BUCKET"

MESSAGES: dict[str, str] = {
    ERROR_MISSING_SOURCE_REF: "The source-ref key is missing.",
    ERROR_INVALID_SOURCE_REF_FORMAT: "The format of the source-ref value is invalid.",
    ERROR_NO_LABEL_ATTRIBUTES: "No label attributes found.",
    ERROR_INVALID_LABEL_ATTRIBUTE_FORMAT: "The format of the label attribute {} is invalid.",
    ERROR_INVALID_LABEL_ATTRIBUTE_METADATA_FORMAT: "The format of the label attribute metadata is invalid.",
    ERROR_NO_VALID_LABEL_ATTRIBUTES: "No valid label attributes found.",
    ERROR_MISSING_BOUNDING_BOX_CONFIDENCE: "One or more bounding boxes has a missing confidence value.",
    ERROR_MISSING_CLASS_MAP_ID: "One of more class ids is missing from the class map.",
    ERROR_INVALID_JSON_LINE: "The JSON Line has an invalid format.",
    ERROR_INVALID_IMAGE: "The image is invalid. Check S3 path and/or image properties.",
    ERROR_INVALID_IMAGE_DIMENSION: "The image dimension(s) do not conform to allowed dimensions.",
    ERROR_INVALID_BOUNDING_BOX: "The bounding box has off frame values.",
    ERROR_BOUNDING_BOX_TOO_SMALL: "The height and width of the bounding box is too small.",
    ERROR_TOO_MANY_BOUNDING_BOXES: "There are more bounding boxes than the allowed maximum.",
    ERROR_NO_VALID_ANNOTATIONS: "No valid annotations found.",
    ERROR_UNSUPPORTED_USE_CASE_TYPE: (
        "The use case type of the {} label attribute metadata is unsupported. Check the type field."
    ),
    ERROR_INVALID_LABEL_NAME_LENGTH: "The length of the label name is too long.",
    DUPLICATE_SOURCE_REF: "The source-ref value appears on an earlier line; this line is ignored.",
    WARNING_UNANNOTATED_RECORD: "Record is unannotated.",
    WARNING_NO_ANNOTATIONS: "No annotations were found.",
    WARNING_NO_ATTRIBUTE_ANNOTATIONS: "No attribute annotations were found.",
    ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT: "The manifest file extension or contents are invalid.",
    ERROR_MANIFEST_SIZE_TOO_LARGE: "The manifest file size exceeds the maximum supported size.",
    ERROR_MANIFEST_ROWS_EXCEEDS_MAXIMUM: "The manifest file has too many rows.",
    ERROR_EMPTY_MANIFEST: "The manifest file is empty.",
    ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST: "The manifest file contains too many invalid rows.",
    ERROR_IMAGES_IN_MULTIPLE_S3_BUCKETS: "The manifest file contains images from multiple S3 buckets.",
    ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_AUTOSPLIT: (
        "The manifest file contains insufficient labeled images per label to perform auto-split."
    ),
    ERROR_INSUFFICIENT_IMAGES_PER_LABEL_FOR_DISTRIBUTE: (
        "The manifest file doesn't have enough labeled images to distribute the dataset."
    ),
    ERROR_MANIFEST_TOO_FEW_LABELS: "The manifest file has too few labels.",
    ERROR_MANIFEST_TOO_MANY_LABELS: "The manifest file has too many labels.",
    ERROR_INSUFFICIENT_LABEL_OVERLAP: (
        "Less than {}% label overlap between the training and testing manifest files."
    ),
    ERROR_MANIFEST_TOO_FEW_USABLE_LABELS: "The manifest file has too few usable labels.",
    ERROR_INSUFFICIENT_USABLE_LABEL_OVERLAP: (
        "Less than {}% usable label overlap between the training and testing manifest files."
    ),
    ERROR_TOO_MANY_RECORDS_IN_ERROR: "The manifest file has too many terminal errors.",
    ERROR_INVALID_PERMISSIONS_MANIFEST_S3_BUCKET: "The S3 bucket permissions are incorrect.",
    ERROR_INVALID_PERMISSIONS_IMAGES_S3_BUCKET: "The permissions for the images S3 bucket are invalid.",
    ERROR_INVALID_IMAGES_S3_BUCKET_OWNER: "Invalid owner id for images S3 bucket.",
    ERROR_FAILED_IMAGES_S3_COPY: "Failed to copy images from S3 bucket.",
    ERROR_CANNOT_WRITE_OUTPUT_S3_BUCKET: "Unable to write to output S3 bucket.",
}

# Codes only an S3 edge can observe; the pure core never emits them.
S3_EDGE_CODES = frozenset(
    {
        ERROR_INVALID_PERMISSIONS_MANIFEST_S3_BUCKET,
        ERROR_INVALID_PERMISSIONS_IMAGES_S3_BUCKET,
        ERROR_INVALID_IMAGES_S3_BUCKET_OWNER,
        ERROR_FAILED_IMAGES_S3_COPY,
        ERROR_CANNOT_WRITE_OUTPUT_S3_BUCKET,
    }
)

TYPE_CLASSIFICATION = "groundtruth/image-classification"
TYPE_DETECTION = "groundtruth/object-detection"
TYPE_MULTILABEL = "groundtruth/image-classification-multilabel"

USE_CASE_CLASSIFICATION = "IMAGE_LEVEL_LABELS"
USE_CASE_DETECTION = "OBJECT_LOCALIZATION"
USE_CASE_NOT_DETERMINED = "NOT_DETERMINED"


def message(code: str, *args: object) -> str:
    """Rekognition's message for ``code``, with ``{}`` placeholders filled from ``args``."""
    text = MESSAGES[code]
    return text.format(*args) if args else text.replace("{} ", "").replace("{}", "")


@dataclass(frozen=True, slots=True)
class Limits:
    """Rekognition's limits (spec §2.1-§2.4); tests pass smaller ones to reach them cheaply."""

    max_line_chars: int = 100_000
    max_rows: int = 250_000
    max_manifest_bytes: int = 1024**3
    max_labels: int = 250
    min_labels_classification: int = 2
    min_labels_detection: int = 1
    max_label_name: int = 256
    max_boxes: int = 50
    min_image_side: int = 64
    max_image_side: int = 4096
    max_aspect_ratio: float = 20.0
    max_image_bytes: int = 15 * 1024 * 1024
    training_downscale_side: int = 1280
    invalid_row_fraction: float = 0.20
    min_label_overlap: float = 0.50
    image_formats: frozenset[str] = frozenset({"jpeg", "jpg", "png"})


DEFAULT_LIMITS = Limits()
