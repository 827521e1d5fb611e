"""Waiting for an endpoint to finish Creating or Updating, as SageMaker's SDK does, but polling every
second instead of every 30 (spec §6.2: only Creating and Updating count as in progress; any other
status ends the wait, and anything but InService is a failure with the endpoint's FailureReason).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from moorage.sdk.connection import Connection
from moorage.sdk.errors import DeploymentFailed, SdkError

__all__ = ["IN_PROGRESS", "wait_for_endpoint"]

IN_PROGRESS = frozenset({"Creating", "Updating"})
POLL_S = 1.0


def wait_for_endpoint(
    connection: Connection,
    endpoint_name: str,
    progress: Callable[[str], None] | None = None,
    *,
    timeout_s: float | None = None,
    poll_s: float = POLL_S,
    watch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """DescribeEndpoint until the status settles; returns the InService description. `progress` hears
    each new status in a sentence; `watch` sees every answer (a bar counts instances with it)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last = None
    while True:
        described = connection.call("DescribeEndpoint", EndpointName=endpoint_name)
        status = str(described["EndpointStatus"])
        if watch is not None:
            watch(described)
        if status != last and progress is not None:
            progress(f"Endpoint {endpoint_name}: {status}")
        last = status
        if status == "InService":
            return described
        if status not in IN_PROGRESS:
            raise DeploymentFailed(endpoint_name, status, described.get("FailureReason"))
        if deadline is not None and time.monotonic() >= deadline:
            raise SdkError(f"Endpoint {endpoint_name} is still {status} after {timeout_s:.0f} s.")
        time.sleep(poll_s)
