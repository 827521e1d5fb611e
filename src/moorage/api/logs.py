"""CloudWatch Logs' HTTP edge: AWS JSON 1.1 with `X-Amz-Target: Logs_20140328.<Operation>`.

Unchanged boto3 `logs` clients and the aws CLI read endpoint logs here (AWS_ENDPOINT_URL_CLOUDWATCH_LOGS,
spec §5): the same `POST /` as the SageMaker control plane, told apart by the target prefix. The
operations read files, so they run on a thread; errors are rendered by `control_error` alone.
"""

from __future__ import annotations

import asyncio
import json
import logging

from moorage.api.errors import control_error, new_request_id
from moorage.api.jsonbody import parse_object
from moorage.errors import InternalFailure, MoorageError, UnknownOperationException
from moorage.httpd import Request, Response
from moorage.logs import OPERATIONS, LogsContext

__all__ = ["TARGET_PREFIX", "LogsApi"]

log = logging.getLogger("moorage.api.logs")

TARGET_PREFIX = "Logs_20140328"
_CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_BODY_BYTES = 256 * 1024  # 100 stream names of 512 characters fit many times over


class LogsApi:
    def __init__(self, ctx: LogsContext) -> None:
        self.ctx = ctx

    async def handle(self, request: Request) -> Response:
        request_id = new_request_id()
        try:
            target = request.headers.get("X-Amz-Target") or ""
            prefix, _, name = target.partition(".")
            operation = OPERATIONS.get(name) if prefix == TARGET_PREFIX else None
            if operation is None:
                raise UnknownOperationException(f"Unknown operation {target}")
            params = parse_object(await request.body(MAX_BODY_BYTES))
            result = await asyncio.to_thread(operation, self.ctx, params)
        except MoorageError as error:
            return control_error(error, request_id)
        except ConnectionError:  # the client left mid-request (Ctrl+C on `moorage logs -f`): nobody to answer
            return control_error(InternalFailure("The client closed the connection."), request_id)
        except Exception:
            log.exception("logs request %s failed", request_id)
            return control_error(InternalFailure("The server failed to process the request."), request_id)
        body = json.dumps(result, separators=(",", ":")).encode()
        return Response(200, body, [("Content-Type", _CONTENT_TYPE), ("x-amzn-RequestId", request_id)])
