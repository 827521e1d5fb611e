"""Log a refusal once per client per minute, so that a flood of refused requests cannot fill the log."""

from __future__ import annotations

import logging
import time

__all__ = ["ThrottledLog"]

_FORGET_AFTER = 4096  # clients remembered at most; older entries are dropped when this is reached


class ThrottledLog:
    """A warning per (client address, kind of refusal), at most once every `interval_s` seconds.

    The count of refusals not logged since the last line is reported with the next one, so nothing is
    hidden, only summarised.
    """

    def __init__(self, log: logging.Logger, interval_s: float = 60.0) -> None:
        self.log = log
        self.interval_s = interval_s
        self._last: dict[tuple[str, str], tuple[float, int]] = {}  # (client, kind) → (logged at, skipped)

    def warning(self, client: str, kind: str, message: str) -> None:
        now = time.monotonic()
        key = (client, kind)
        logged_at, skipped = self._last.get(key, (-1e18, 0))
        if now - logged_at < self.interval_s:
            self._last[key] = (logged_at, skipped + 1)
            return
        if len(self._last) >= _FORGET_AFTER:
            self._last = {k: v for k, v in self._last.items() if now - v[0] < self.interval_s}
            if len(self._last) >= _FORGET_AFTER:  # a flood from that many addresses: start afresh
                self._last.clear()
        self._last[key] = (now, 0)
        more = f" ({skipped} more like it since the last report)" if skipped else ""
        self.log.warning("refused %s from %s: %s%s", kind, client, message, more)
