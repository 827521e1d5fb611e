"""The one place where domain errors become SageMaker's error shapes on the wire.

Three protocols, three shapes (spec §3.1 and §4.2):
- the control plane (AWS JSON 1.1): `{"__type": code, "Message": text}`, status 400 unless modeled;
- the runtime (rest-json): the code in `x-amzn-ErrorType`, a JSON body with `Message`, and for
  ModelError the container's status and body as `OriginalStatusCode` / `OriginalMessage`;
- the AWS query protocol (IAM GetRole, for the SageMaker SDK's role names):
  `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>`.
Every error response carries `x-amzn-RequestId`, which botocore reports as the request id.
"""

from __future__ import annotations

import json
import uuid
from xml.sax.saxutils import escape

from moorage.errors import ModelError, MoorageError
from moorage.httpd import Response

__all__ = ["control_error", "new_request_id", "query_error", "runtime_error"]


def new_request_id() -> str:
    return str(uuid.uuid4())


def control_error(error: MoorageError, request_id: str) -> Response:
    body = json.dumps({"__type": error.code, "Message": error.message}).encode()
    return Response(
        error.status,
        body,
        [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", request_id)],
    )


def runtime_error(error: MoorageError, request_id: str) -> Response:
    payload: dict[str, object]
    if isinstance(error, ModelError):
        # 4xx: CLIENT_ERROR_FROM_MODEL is what SageMaker sends (observed); the 5xx and timeout
        # code is not public, so the server-side form is our choice (docs/compatibility.md).
        origin = "CLIENT" if 400 <= error.original_status < 500 else "SERVER"
        payload = {
            "ErrorCode": f"{origin}_ERROR_FROM_MODEL",
            "LogStreamArn": error.log_stream_arn,
            "Message": error.message,
            "OriginalMessage": error.original_message,
            "OriginalStatusCode": error.original_status,
        }
    else:
        payload = {"ErrorCode": error.code, "Message": error.message}
    return Response(
        error.status,
        json.dumps(payload).encode(),
        [
            ("Content-Type", "application/json"),
            ("x-amzn-ErrorType", error.code),
            ("x-amzn-RequestId", request_id),
        ],
    )


def query_error(error: MoorageError, request_id: str, namespace: str) -> Response:
    """An AWS query-protocol error; botocore reads `Error/Code` and `Error/Message` from the XML."""
    kind = "Receiver" if error.status >= 500 else "Sender"
    body = (
        f'<ErrorResponse xmlns="{namespace}"><Error><Type>{kind}</Type>'
        f"<Code>{escape(error.code)}</Code><Message>{escape(error.message)}</Message></Error>"
        f"<RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()
    return Response(error.status, body, [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)])
