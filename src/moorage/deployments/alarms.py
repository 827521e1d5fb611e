"""The alarms a guarded update watches: moorage's CloudWatch alarms (`cloudwatch/service.py`).

A rollout reads the alarms' states when each step begins (one may be in ALARM already) and is told of
every change while it bakes, so a breach rolls traffic back at once, without polling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from moorage.cloudwatch.records import AlarmStateChange

__all__ = ["ALARM", "AlarmStates"]

ALARM = "ALARM"


class AlarmStates(Protocol):
    """What a rollout needs of CloudWatch (`CloudWatchService` provides it)."""

    async def states(self, names: Iterable[str]) -> Mapping[str, str]:
        """Each named alarm's StateValue (OK, ALARM, INSUFFICIENT_DATA); a missing name: no such alarm."""
        ...

    def subscribe(self, callback: Callable[[AlarmStateChange], None]) -> Callable[[], None]:
        """Call `callback` on the event loop at each change of an alarm's state; returns the unsubscribe."""
        ...
