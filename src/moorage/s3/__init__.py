"""The embedded S3-compatible artifact store that `moorage serve` runs on its own port.

The laptop default, not a storage system: point AWS_ENDPOINT_URL_S3 at real S3 or MinIO for more.
"""
