"""How many torch threads a request may use, so that busy workers never oversubscribe the cores.

The peers' worst failure on a 2-core machine was two workers each running two torch threads:
ResNet throughput fell to a quarter (shared/peers/README.md). A fixed choice cannot win both ways:
one worker with two threads has the best latency for one client, two workers with one thread each
the best throughput for many. So the choice is made per request: a request that starts while the
machine is otherwise idle gets every core; when N workers are busy, each gets cores // N.
"""

from __future__ import annotations

__all__ = ["ThreadBudget"]


class ThreadBudget:
    def __init__(self, cores: int) -> None:
        self.cores = max(1, cores)
        self.busy = 0

    def acquire(self, cap: int) -> int:
        """Count one more busy worker and return its thread count (at least 1, at most `cap`)."""
        self.busy += 1
        return max(1, min(cap, self.cores // self.busy))

    def release(self) -> None:
        self.busy = max(0, self.busy - 1)
