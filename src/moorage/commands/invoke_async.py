"""`moorage invoke ENDPOINT --async`: one InvokeEndpointAsync, and with --wait its result from S3.

Without --wait it prints the InferenceId and the two locations (output, failure) on stdout, one
`Name: value` line each, and exits. With --wait it watches both locations in the S3 the server writes
to (its embedded store, or the S3 boto3 is configured for) and writes the output object's body like
`moorage invoke` does, or prints the failure object and exits 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from moorage.commands._session import connect, user_errors
from moorage.errors import ConfigError, MoorageError

__all__ = ["invoke_async"]

_POLL_S = 0.25


def invoke_async(
    args: argparse.Namespace, body: bytes | None, content_type: str | None
) -> tuple[bytes, str] | None:
    """Send the request; None without --wait, else (the output's body, its ContentType)."""
    if args.target_variant is not None:
        raise ConfigError(
            "--target-variant is not an InvokeEndpointAsync parameter; leave it out with --async"
        )
    request: dict[str, Any] = {"EndpointName": args.endpoint}
    if args.input is not None:
        request["InputLocation"] = args.input
    else:
        request["Body"] = body
    optional = {
        "ContentType": args.content_type or content_type,
        "Accept": args.accept,
        "CustomAttributes": args.custom_attributes,
        "InferenceId": args.inference_id,
    }
    request.update({key: value for key, value in optional.items() if value is not None})
    connection = connect(args)
    with user_errors(args.endpoint), connection.translated(connection.url):
        accepted = connection.runtime.invoke_endpoint_async(**request)
    lines = [
        f"InferenceId: {accepted['InferenceId']}",
        f"OutputLocation: {accepted['OutputLocation']}",
        f"FailureLocation: {accepted['FailureLocation']}",
    ]
    if not args.wait:
        print("\n".join(lines))
        return None
    print("\n".join(lines), file=sys.stderr)
    s3 = connection.s3_for_model_data()
    deadline = time.monotonic() + args.wait_timeout
    with user_errors(args.endpoint):
        while True:
            found = _get(s3, accepted["OutputLocation"])
            if found is not None:
                return found
            failure = _get(s3, accepted["FailureLocation"])
            if failure is not None:
                raise MoorageError(
                    f"the request failed: {failure[0].decode('utf-8', 'replace')}\n"
                    f"See the endpoint's logs: moorage logs {args.endpoint}"
                )
            if time.monotonic() > deadline:
                raise MoorageError(
                    f"no result after {args.wait_timeout:g} s; it may still be queued or running. "
                    f"Look later at {accepted['OutputLocation']}"
                )
            time.sleep(_POLL_S)


def _get(s3: Any, location: str) -> tuple[bytes, str] | None:
    from botocore.exceptions import ClientError

    bucket, _, key = location.removeprefix("s3://").partition("/")
    try:
        answer = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    return answer["Body"].read(), str(answer.get("ContentType") or "")
