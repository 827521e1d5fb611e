"""CloudWatch's HTTP edge: the alarm and metric calls of unchanged boto3 and aws CLI clients.

botocore's CloudWatch model lists the protocols `smithy-rpc-v2-cbor`, `json` and `query`, and clients
use the first they support: botocore ≥ 1.38 (boto3 and the aws CLI 1.x that `make` installs) sends
Smithy RPC v2 CBOR, `POST /service/GraniteServiceVersion20100801/operation/<Operation>` with a CBOR
body; a client that prefers AWS JSON 1.0 sends `POST /` with `X-Amz-Target:
GraniteServiceVersion20100801.<Operation>`. Both are served here, from the same operations. (Clients
older than that speak the query protocol, which is not served: docs/compatibility.md.)

Errors carry the code as the API model's shape in `__type` and, because CloudWatch is
awsQueryCompatible, the query-era code in `x-amzn-query-error` (`Code;Sender`), which botocore prefers
when it picks the exception class. Operations block on SQLite, so they run on the CloudWatch thread.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from moorage.api import cbor
from moorage.api.errors import new_request_id
from moorage.api.jsonbody import parse_object
from moorage.cloudwatch.context import CloudWatchContext, Params, Timestamp
from moorage.cloudwatch.operations import OPERATIONS
from moorage.errors import InternalFailure, MoorageError, SerializationException, UnknownOperationException
from moorage.httpd import Request, Response

__all__ = ["RPC_PATH_PREFIX", "TARGET_PREFIX", "CloudWatchApi", "cloudwatch_error", "is_cloudwatch_request"]

log = logging.getLogger("moorage.api.cloudwatch")

TARGET_PREFIX = "GraniteServiceVersion20100801"
RPC_PATH_PREFIX = f"/service/{TARGET_PREFIX}/operation/"
_SHAPE_NAMESPACE = "com.amazonaws.cloudwatch#"
_CBOR = "application/cbor"
_JSON = "application/x-amz-json-1.0"
MAX_BODY_BYTES = 1024 * 1024  # 500 GetMetricData queries with 30 dimensions each fit
T = TypeVar("T")
RunOnStoreThread = Callable[..., Awaitable[Any]]


def is_cloudwatch_request(request: Request) -> bool:
    """Whether the request is for CloudWatch (either protocol): its errors must be in CloudWatch's shape."""
    if request.path.startswith(RPC_PATH_PREFIX):
        return True
    return (request.headers.get("x-amz-target") or "").startswith(f"{TARGET_PREFIX}.")


class CloudWatchApi:
    def __init__(self, ctx: CloudWatchContext, run: RunOnStoreThread) -> None:
        """`run(fn, *args)` runs a blocking call on the CloudWatch stores' thread (CloudWatchService.run)."""
        self.ctx = ctx
        self.run = run

    async def handle(self, request: Request) -> Response:
        request_id = new_request_id()
        is_cbor = request.path.startswith(RPC_PATH_PREFIX)
        try:
            if is_cbor:
                name = request.path[len(RPC_PATH_PREFIX) :]
            else:
                name = (request.headers.get("x-amz-target") or "").partition(".")[2]
            operation = OPERATIONS.get(name)
            if operation is None or request.method != "POST":
                raise UnknownOperationException(
                    f"moorage serves the CloudWatch operations {', '.join(sorted(OPERATIONS))}; "
                    f"not {request.method} {name or request.path}."
                )
            body = await request.body(MAX_BODY_BYTES)
            params = _decode_cbor(body) if is_cbor else parse_object(body)
            result = await self.run(operation, self.ctx, params)
        except MoorageError as error:
            return cloudwatch_error(error, request_id, cbor_body=is_cbor)
        except ConnectionError:
            raise  # the client left before its body arrived; nothing was run
        except Exception:
            log.exception("CloudWatch request %s failed", request_id)
            failure = InternalFailure("The server failed to process the request; see the server log.")
            return cloudwatch_error(failure, request_id, cbor_body=is_cbor)
        if is_cbor:
            payload = cbor.encode(result, default=lambda t: cbor.Tagged(1, _seconds(t)))
            headers = [("Content-Type", _CBOR), ("smithy-protocol", "rpc-v2-cbor")]
        else:
            payload = json.dumps(result, separators=(",", ":"), default=_seconds).encode()
            headers = [("Content-Type", _JSON)]
        return Response(200, payload, [*headers, ("x-amzn-RequestId", request_id)])


def cloudwatch_error(error: MoorageError, request_id: str, *, cbor_body: bool) -> Response:
    """An error as botocore reads it from CloudWatch, in CBOR or JSON 1.0."""
    shape = getattr(error, "shape", error.code)
    fault = "Receiver" if error.status >= 500 else "Sender"
    body: Params = {"__type": f"{_SHAPE_NAMESPACE}{shape}", "message": error.message}
    headers = [("x-amzn-query-error", f"{error.code};{fault}"), ("x-amzn-RequestId", request_id)]
    if cbor_body:
        return Response(
            error.status,
            cbor.encode(body),
            [("Content-Type", _CBOR), ("smithy-protocol", "rpc-v2-cbor"), *headers],
        )
    return Response(error.status, json.dumps(body).encode(), [("Content-Type", _JSON), *headers])


def _decode_cbor(body: bytes) -> Params:
    if not body:
        return {}
    value = cbor.decode(body)
    if not isinstance(value, dict):
        raise SerializationException(f"The request body must be a CBOR map, not {type(value).__name__}.")
    converted = _untag(value)
    assert isinstance(converted, dict)
    return converted


def _untag(value: Any) -> Any:
    """Timestamps (tag 1) as epoch seconds, the form the operations take."""
    if isinstance(value, cbor.Tagged):
        return value.value
    if isinstance(value, dict):
        return {key: _untag(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_untag(item) for item in value]
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, Timestamp):
        return value.seconds
    raise TypeError(f"cannot encode {type(value).__name__}")
