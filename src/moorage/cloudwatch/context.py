"""What every CloudWatch operation gets and gives: the context, its members, and response timestamps.

An operation takes the context and the request's members (decoded from CBOR or JSON by the edge, with
timestamps as epoch seconds) and returns the response's members, timestamps as `Timestamp`. Operations
run on the CloudWatch stores' thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moorage.cloudwatch.alarms import AlarmStore
from moorage.cloudwatch.history import MetricHistory
from moorage.cloudwatch.records import AlarmStateChange

__all__ = ["CloudWatchContext", "Operation", "Params", "Timestamp"]

Params = dict[str, Any]


@dataclass(frozen=True)
class Timestamp:
    """A timestamp member of a response (the edge writes it as its protocol wants: CBOR tag 1, a number)."""

    seconds: float


@dataclass
class CloudWatchContext:
    history: MetricHistory
    alarms: AlarmStore
    region: str
    account_id: str
    min_period_s: int
    clock: Callable[[], float] = time.time
    # Told of a state change made by an operation (SetAlarmState); the service sets it when it starts.
    changed: Callable[[AlarmStateChange], None] = field(default=lambda change: None)

    def alarm_arn(self, name: str) -> str:
        return f"arn:aws:cloudwatch:{self.region}:{self.account_id}:alarm:{name}"


Operation = Callable[[CloudWatchContext, Params], Params]
