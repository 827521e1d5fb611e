"""Endpoint logs: the files workers write, read back as CloudWatch Logs groups, streams and events.

`layout` names and finds the files, `reader` turns lines into time-stamped events, `tokens` pages
through them, `operations` answers the CloudWatch Logs API, and `rotation` keeps every file under a
size cap. No HTTP here: `moorage.api.logs` is the edge.
"""

from moorage.logs.layout import GROUP_PREFIX, LogsLayout, group_name
from moorage.logs.operations import OPERATIONS, LogsContext
from moorage.logs.rotation import DEFAULT_MAX_BYTES, LogRotator

__all__ = [
    "DEFAULT_MAX_BYTES",
    "GROUP_PREFIX",
    "OPERATIONS",
    "LogRotator",
    "LogsContext",
    "LogsLayout",
    "group_name",
]
