"""The S3 errors the embedded store raises, each with S3's code and HTTP status.

S3's error vocabulary is its own (NoSuchKey, BucketNotEmpty, ...) and belongs to this package only, so
the classes live here rather than in `moorage.errors`; they still derive from `MoorageError`, so the
rest of moorage can catch them as domain errors. `fields` become extra elements of the XML error
document (BucketName, Key, UploadId, ...) and `headers` extra response headers (Content-Range on 416).
"""

from __future__ import annotations

from moorage.errors import MoorageError

__all__ = [
    "BadDigest",
    "BucketAlreadyOwnedByYou",
    "BucketNotEmpty",
    "EntityTooLarge",
    "EntityTooSmall",
    "IllegalLocationConstraintException",
    "IncompleteBody",
    "InternalError",
    "InvalidArgument",
    "InvalidBucketName",
    "InvalidDigest",
    "InvalidPart",
    "InvalidPartNumber",
    "InvalidPartOrder",
    "InvalidRange",
    "InvalidRequest",
    "InvalidURI",
    "KeyTooLongError",
    "MalformedXML",
    "MetadataTooLarge",
    "MethodNotAllowed",
    "NoSuchBucket",
    "NoSuchKey",
    "NoSuchUpload",
    "NotImplementedOperation",
    "PreconditionFailed",
    "S3Error",
    "XAmzContentSHA256Mismatch",
]


class S3Error(MoorageError):
    code = "InternalError"
    status = 500

    def __init__(
        self,
        message: str,
        *,
        fields: tuple[tuple[str, str], ...] = (),
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(message)
        self.fields = fields
        self.headers = headers


class NoSuchBucket(S3Error):
    code = "NoSuchBucket"
    status = 404

    def __init__(self, bucket: str) -> None:
        super().__init__("The specified bucket does not exist", fields=(("BucketName", bucket),))


class NoSuchKey(S3Error):
    code = "NoSuchKey"
    status = 404

    def __init__(self, key: str) -> None:
        super().__init__("The specified key does not exist.", fields=(("Key", key),))


class NoSuchUpload(S3Error):
    code = "NoSuchUpload"
    status = 404

    def __init__(self, upload_id: str) -> None:
        super().__init__(
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have "
            "been aborted or completed.",
            fields=(("UploadId", upload_id),),
        )


class BucketAlreadyOwnedByYou(S3Error):
    code = "BucketAlreadyOwnedByYou"
    status = 409

    def __init__(self, bucket: str) -> None:
        super().__init__(
            "Your previous request to create the named bucket succeeded and you already own it.",
            fields=(("BucketName", bucket),),
        )


class BucketNotEmpty(S3Error):
    code = "BucketNotEmpty"
    status = 409

    def __init__(self, bucket: str) -> None:
        super().__init__("The bucket you tried to delete is not empty", fields=(("BucketName", bucket),))


class InvalidBucketName(S3Error):
    code = "InvalidBucketName"
    status = 400

    def __init__(self, bucket: str) -> None:
        super().__init__("The specified bucket is not valid.", fields=(("BucketName", bucket),))


class IllegalLocationConstraintException(S3Error):
    code = "IllegalLocationConstraintException"
    status = 400


class KeyTooLongError(S3Error):
    code = "KeyTooLongError"
    status = 400


class InvalidArgument(S3Error):
    code = "InvalidArgument"
    status = 400


class InvalidRequest(S3Error):
    code = "InvalidRequest"
    status = 400


class InvalidURI(S3Error):
    code = "InvalidURI"
    status = 400


class MalformedXML(S3Error):
    code = "MalformedXML"
    status = 400

    def __init__(self, detail: str = "") -> None:
        message = "The XML you provided was not well-formed or did not validate against our published schema"
        super().__init__(f"{message}: {detail}" if detail else message)


class MetadataTooLarge(S3Error):
    code = "MetadataTooLarge"
    status = 400


class InvalidDigest(S3Error):
    code = "InvalidDigest"
    status = 400


class BadDigest(S3Error):
    code = "BadDigest"
    status = 400


class XAmzContentSHA256Mismatch(S3Error):
    code = "XAmzContentSHA256Mismatch"
    status = 400


class IncompleteBody(S3Error):
    code = "IncompleteBody"
    status = 400


class EntityTooSmall(S3Error):
    code = "EntityTooSmall"
    status = 400


class EntityTooLarge(S3Error):
    code = "EntityTooLarge"
    status = 400


class InvalidPart(S3Error):
    code = "InvalidPart"
    status = 400


class InvalidPartOrder(S3Error):
    code = "InvalidPartOrder"
    status = 400


class InvalidPartNumber(S3Error):
    code = "InvalidPartNumber"
    status = 416


class InvalidRange(S3Error):
    code = "InvalidRange"
    status = 416


class PreconditionFailed(S3Error):
    code = "PreconditionFailed"
    status = 412

    def __init__(self, condition: str) -> None:
        super().__init__(
            "At least one of the pre-conditions you specified did not hold",
            fields=(("Condition", condition),),
        )


class MethodNotAllowed(S3Error):
    code = "MethodNotAllowed"
    status = 405


class NotImplementedOperation(S3Error):
    """S3's `NotImplemented`: a real S3 feature this store does not offer (the name avoids the builtin)."""

    code = "NotImplemented"
    status = 501


class InternalError(S3Error):
    code = "InternalError"
    status = 500
