"""The control plane's HTTP edge: AWS JSON 1.1, as botocore speaks it to SageMaker (spec §3.1).

`POST /` with `X-Amz-Target: SageMaker.<Operation>` and a JSON object body. The operation runs on
the store's own thread (SQLite is blocking; the event loop must not wait on the disk), and its
result goes back as `application/x-amz-json-1.1` with `x-amzn-RequestId`. Errors are rendered by
`moorage.api.errors.control_error` and nowhere else. After a write to an endpoint, the hooks hear
of it on the event loop, so the reconciler can act at once instead of polling.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Protocol

from moorage.api.errors import control_error, new_request_id
from moorage.api.jsonbody import parse_object
from moorage.control import endpoint_configs, endpoints, models, tags
from moorage.control.arns import ControlContext
from moorage.control.records import JsonObject
from moorage.control.store import Store
from moorage.errors import InternalFailure, MoorageError, UnknownOperationException
from moorage.httpd import Request, Response

__all__ = ["OPERATIONS", "ControlHooks", "ControlPlane"]

logger = logging.getLogger(__name__)

Operation = Callable[[Store, ControlContext, JsonObject], JsonObject]

OPERATIONS: dict[str, Operation] = {
    "CreateModel": models.create_model,
    "DescribeModel": models.describe_model,
    "ListModels": models.list_models,
    "DeleteModel": models.delete_model,
    "CreateEndpointConfig": endpoint_configs.create_endpoint_config,
    "DescribeEndpointConfig": endpoint_configs.describe_endpoint_config,
    "ListEndpointConfigs": endpoint_configs.list_endpoint_configs,
    "DeleteEndpointConfig": endpoint_configs.delete_endpoint_config,
    "CreateEndpoint": endpoints.create_endpoint,
    "DescribeEndpoint": endpoints.describe_endpoint,
    "ListEndpoints": endpoints.list_endpoints,
    "UpdateEndpoint": endpoints.update_endpoint,
    "UpdateEndpointWeightsAndCapacities": endpoints.update_endpoint_weights_and_capacities,
    "DeleteEndpoint": endpoints.delete_endpoint,
    "AddTags": tags.add_tags,
    "ListTags": tags.list_tags,
    "DeleteTags": tags.delete_tags,
}

# Operations that change what an endpoint should run; the reconciler is told after each.
_ENDPOINT_WRITES = frozenset(
    {"CreateEndpoint", "UpdateEndpoint", "UpdateEndpointWeightsAndCapacities", "DeleteEndpoint"}
)

_TARGET_PREFIX = "SageMaker."
_CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_BODY_BYTES = 1024 * 1024  # the largest valid input (100 env vars of 2 KiB, 15 containers) is far less


class ControlHooks(Protocol):
    def endpoint_changed(self, name: str) -> None:
        """Called on the event loop after any write to endpoint `name` (its name as created)."""


class ControlPlane:
    def __init__(
        self,
        store: Store,
        ctx: ControlContext,
        hooks: ControlHooks,
        executor: Executor,
        *,
        operations: Mapping[str, Operation] = OPERATIONS,
        target_prefix: str = _TARGET_PREFIX,
    ) -> None:
        """`operations` and `target_prefix` serve another AWS JSON 1.1 service from the same store
        (Application Auto Scaling: `control.autoscaling.OPERATIONS`, "AnyScaleFrontendService.")."""
        self.store = store
        self.ctx = ctx
        self.hooks = hooks
        self.executor = executor
        self.operations = dict(operations)
        self.target_prefix = target_prefix

    async def handle(self, request: Request) -> Response:
        request_id = new_request_id()
        try:
            name = _operation_name(request, self.target_prefix)
            operation = self.operations.get(name)
            if operation is None:
                raise UnknownOperationException(f"Unknown operation {self.target_prefix}{name}")
            params = parse_object(await request.body(MAX_BODY_BYTES))
            loop = asyncio.get_running_loop()
            result, changed = await loop.run_in_executor(self.executor, self._run, name, operation, params)
        except MoorageError as error:
            return control_error(error, request_id)
        except ConnectionError:
            raise  # the client left before its body arrived; nothing was run
        except Exception:
            logger.exception("control-plane request %s failed", request_id)
            return control_error(InternalFailure("The server failed to process the request."), request_id)
        if changed is not None:
            try:
                self.hooks.endpoint_changed(changed)
            except Exception:  # the write is done and must be acknowledged; the reconciler also re-reads
                logger.exception("endpoint_changed(%r) failed", changed)
        body = json.dumps(result, separators=(",", ":")).encode()
        return Response(200, body, [("Content-Type", _CONTENT_TYPE), ("x-amzn-RequestId", request_id)])

    def _run(self, name: str, operation: Operation, params: JsonObject) -> tuple[JsonObject, str | None]:
        """On the store's thread: the operation, then the endpoint it changed (by its stored name)."""
        result = operation(self.store, self.ctx, params)
        if name not in _ENDPOINT_WRITES:
            return result, None
        # Names are case-insensitive; tell the reconciler the name the endpoint was created with.
        record = self.store.get_endpoint(params["EndpointName"])
        return result, record.name if record is not None else params["EndpointName"]


def _operation_name(request: Request, prefix: str) -> str:
    target = request.headers.get("X-Amz-Target")
    if request.method != "POST" or target is None:
        raise UnknownOperationException(
            f"The control plane takes POST / with an X-Amz-Target: {prefix}<Operation> header."
        )
    if not target.startswith(prefix):
        raise UnknownOperationException(f"Unknown operation {target}")
    return target[len(prefix) :]
