"""How `PyTorchModel.deploy` shows its progress: a widget in Jupyter, a text bar on a terminal, nothing
in a script, or the caller's own function.

`deploy(progress=...)`: a callable receives one short sentence per step (as before); `True` always
draws a bar; `False` draws nothing; `None` (the default) draws a bar in a Jupyter kernel (tqdm's
ipywidgets bar when ipywidgets is installed) or when stderr is a terminal, and nothing otherwise, so
scripts, logs and tests stay quiet. The bar counts instances in service against those wanted, and its
label says the current step or the endpoint's status.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tqdm import tqdm

__all__ = ["DeployDisplay", "Progress", "deploy_display"]

Progress = Callable[[str], None] | bool | None


@dataclass
class DeployDisplay:
    """`say` takes a step's sentence; `watch` each DescribeEndpoint answer while waiting."""

    say: Callable[[str], None]
    watch: Callable[[dict[str, Any]], None] | None = None


@contextlib.contextmanager
def deploy_display(progress: Progress) -> Iterator[DeployDisplay]:
    if callable(progress):
        yield DeployDisplay(progress)
        return
    from moorage.commands._progress import bar_class, in_notebook

    if progress is False or (progress is None and not (in_notebook() or sys.stderr.isatty())):
        yield DeployDisplay(_silent)
        return
    with bar_class()(total=1, desc="Deploying", unit="instance", file=sys.stderr, leave=True) as bar:
        yield DeployDisplay(
            lambda message: _label(bar, message), lambda described: _instances(bar, described)
        )


def _label(bar: tqdm[Any], message: str) -> None:
    bar.set_description_str(message, refresh=False)
    bar.refresh()


def _instances(bar: tqdm[Any], described: dict[str, Any]) -> None:
    from moorage.commands._progress import instances

    current, desired = instances(described)
    if desired and desired != bar.total:
        bar.reset(total=desired)  # the notebook widget learns its new maximum only through reset
    bar.update(min(current, desired) - bar.n)
    _label(bar, f"Endpoint {described['EndpointName']}: {described['EndpointStatus']}")


def _silent(message: str) -> None:
    pass
