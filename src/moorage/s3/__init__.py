"""The embedded S3-compatible artifact store that `moorage serve` runs on its own port.

The laptop default, not a storage system: point AWS_ENDPOINT_URL_S3 at real S3 or MinIO for more.
It serves what the SageMaker SDK, boto3 and the aws CLI use (spec §5, §6.2, must-match 24): buckets,
objects with ranged and conditional reads, copies, batch deletes, listings, and multipart uploads,
stored durably under one directory.
"""

from moorage.s3.app import build_s3_app, list_objects, open_object
from moorage.s3.records import ObjectInfo

__all__ = ["ObjectInfo", "build_s3_app", "list_objects", "open_object"]
