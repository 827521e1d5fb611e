"""Progress for long work: bars on a terminal, plain lines for scripts and tests.

Bars (tqdm, on stderr) appear only when stderr is a terminal or --progress is given. Otherwise each
step is one line on stderr. Either way stdout carries only the result, so `$(moorage upload f)` and
`moorage endpoints --output json | jq` read clean output.

Waiting polls DescribeEndpoint twice a second (SageMaker's SDK polls every 30 s; a local server
answers at once) until the status leaves the in-progress ones (spec §3.4).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from moorage.commands._output import human_size

if TYPE_CHECKING:
    from tqdm import tqdm

    from moorage.sdk import Connection

__all__ = [
    "IN_PROGRESS",
    "Reporter",
    "add_progress_option",
    "bar_class",
    "in_notebook",
    "instances",
    "wait_gone",
    "wait_settled",
]

IN_PROGRESS = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})
POLL_S = 0.5


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress",
        action="store_true",
        help="draw progress bars even when stderr is not a terminal (by default: only on a terminal)",
    )


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (IPython's kernel app, not a terminal IPython)."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def bar_class() -> type[tqdm[Any]]:
    """tqdm's notebook widget in Jupyter when ipywidgets is installed, its plain text bar elsewhere."""
    if in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as notebook_bar

        return notebook_bar
    from tqdm import tqdm as text_bar

    return text_bar


class Reporter:
    """Says what is happening, on stderr: as bars when `bars`, else as plain lines."""

    def __init__(self, bars: bool) -> None:
        self.bars = bars
        self._active: tqdm[Any] | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_args(cls, args: argparse.Namespace) -> Reporter:
        return cls(bool(getattr(args, "progress", False)) or sys.stderr.isatty())

    def say(self, message: str) -> None:
        if self._active is not None:
            self._active.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def transfer(self, description: str, label: str, total: int) -> Iterator[Callable[[int], None]]:
        """Says `description`, then counts bytes under `label`: call the yielded function with each
        chunk's size."""
        self.say(f"{description} ({human_size(total)})")
        if not self.bars:
            yield _ignore
            return
        from tqdm import tqdm

        with tqdm(
            total=total, desc=label, unit="B", unit_scale=True, file=sys.stderr, dynamic_ncols=True
        ) as bar:
            self._active = bar

            def advance(size: int) -> None:  # s3transfer calls back from its worker threads
                with self._lock:
                    bar.update(size)

            try:
                yield advance
            finally:
                self._active = None

    @contextlib.contextmanager
    def status(self, prefix: str) -> Iterator[Callable[[str], None]]:
        """A status line with the time spent: redrawn in place (bars) or printed when it changes."""
        started = time.monotonic()
        if not self.bars:
            last: list[str] = []

            def line(text: str) -> None:
                if last != [text]:
                    last[:] = [text]
                    self.say(f"{prefix}: {text} [{time.monotonic() - started:.0f} s]")

            yield line
            return
        from tqdm import tqdm

        with tqdm(total=None, bar_format="{desc} [{elapsed}]", file=sys.stderr, dynamic_ncols=True) as bar:
            self._active = bar

            def redraw(text: str) -> None:
                bar.set_description_str(f"{prefix}: {text}", refresh=False)
                bar.refresh()

            try:
                yield redraw
            finally:
                self._active = None


def instances(described: dict[str, Any]) -> tuple[int, int]:
    """(current, desired) instances over every variant of a DescribeEndpoint answer."""
    variants = described.get("ProductionVariants", [])
    current = sum(int(v.get("CurrentInstanceCount", 0)) for v in variants)
    desired = sum(int(v.get("DesiredInstanceCount", 0)) for v in variants)
    pending = described.get("PendingDeploymentSummary")
    if pending:  # an update: what it is rolling out is what the endpoint is heading for
        desired = sum(int(v.get("DesiredInstanceCount", 0)) for v in pending.get("ProductionVariants", []))
    return current, desired


def wait_settled(
    connection: Connection, endpoint: str, reporter: Reporter, *, poll_s: float = POLL_S
) -> dict[str, Any]:
    """DescribeEndpoint until the status is no longer in progress; returns the last answer."""
    with reporter.status(f"Endpoint {endpoint}") as show:
        while True:
            described = connection.call("DescribeEndpoint", EndpointName=endpoint)
            status = str(described["EndpointStatus"])
            current, desired = instances(described)
            show(f"{status}, {current}/{desired} instances in service")
            if status not in IN_PROGRESS:
                return described
            time.sleep(poll_s)


def wait_gone(connection: Connection, endpoint: str, reporter: Reporter, *, poll_s: float = POLL_S) -> None:
    """DescribeEndpoint until the server no longer knows the endpoint (Deleting → gone)."""
    from moorage.commands._session import endpoint_missing
    from moorage.sdk import ServiceError

    with reporter.status(f"Endpoint {endpoint}") as show:
        while True:
            try:
                described = connection.call("DescribeEndpoint", EndpointName=endpoint)
            except ServiceError as exc:
                if endpoint_missing(exc):
                    show("deleted")
                    return
                raise
            show(str(described["EndpointStatus"]))
            time.sleep(poll_s)


def _ignore(size: int) -> None:
    pass
