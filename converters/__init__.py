"""The pure core: one canonical entry model and streaming conversions between Label Studio tasks, Ground
Truth manifests, COCO and CSV; Rekognition's validation rules; EXIF geometry; the train/test split.

No network, no S3, no Label Studio client here: only the streams a caller hands in.
"""
