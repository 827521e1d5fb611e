"""Which variant, and so which worker pool, a request to an endpoint goes to right now.

The reconciler publishes a route when an endpoint's deployment is up and swaps it atomically during
a blue/green update; invocations only read. While an InService endpoint's instances restart (after a
server restart, or a retry after they could not start) its route holds the variants' pools before
any worker is ready, so requests wait in them for the first ready instance. An endpoint that exists
but has no route (Creating, Failed, Deleting, or InService while its instances cannot start) is
reported as such, so the edge can say which and why.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from moorage.errors import ServiceUnavailable, ValidationError
from moorage.runtime.pool import WorkerPool

__all__ = ["EndpointRoute", "RoutedVariant", "Router", "StartingVariant"]


class RoutedVariant(Protocol):
    """What a request needs of a variant: its name (for the response header) and its pool."""

    @property
    def name(self) -> str: ...

    @property
    def pool(self) -> WorkerPool: ...


@dataclass(frozen=True)
class StartingVariant:
    """A variant whose runtime is not built yet (its model is being prepared): only its pool."""

    name: str
    pool: WorkerPool


@dataclass(frozen=True)
class EndpointRoute:
    endpoint: str
    variants: Mapping[str, RoutedVariant]
    weights: dict[str, float]
    _cumulative: list[float] = field(default_factory=list, repr=False)
    _names: list[str] = field(default_factory=list, repr=False)
    # A shadow variant gets a copy of this share of requests (runtime/shadow.py); never picked here.
    shadow: RoutedVariant | None = None
    shadow_share: float = 0.0
    # A guarded update in progress (moorage.deployments): this share of requests goes to the new fleet.
    green: EndpointRoute | None = None
    green_share: float = 0.0

    def __post_init__(self) -> None:
        total = 0.0
        for name in self.variants:
            weight = self.weights.get(name, 0.0)
            if weight > 0:
                total += weight
                self._cumulative.append(total)
                self._names.append(name)

    def pick(self, target_variant: str | None, account: str) -> RoutedVariant:
        green = self.green
        if (
            green is not None
            and (target_variant is None or target_variant in green.variants)
            and random.random() < self.green_share
        ):
            return green.pick(target_variant, account)
        if target_variant is not None:
            variant = self.variants.get(target_variant)
            if variant is None:
                raise ValidationError(
                    f"The variant {target_variant} is not found for endpoint {self.endpoint} "
                    f"of account {account}."
                )
            return variant
        if not self._names:
            raise ServiceUnavailable(
                f"Every production variant of endpoint {self.endpoint} has weight 0; set a weight or use "
                "TargetVariant."
            )
        point = random.random() * self._cumulative[-1]
        return self.variants[self._names[bisect.bisect_right(self._cumulative, point)]]


class Router:
    def __init__(self, account: str) -> None:
        self.account = account
        self._routes: dict[str, EndpointRoute] = {}
        self._status: dict[str, str] = {}  # endpoints that exist, by name: their EndpointStatus
        self._cannot_start: dict[str, str] = {}  # InService endpoints whose instances cannot start: why

    def publish(self, route: EndpointRoute) -> None:
        self._routes[route.endpoint] = route

    def withdraw(self, endpoint: str) -> EndpointRoute | None:
        return self._routes.pop(endpoint, None)

    def route(self, endpoint: str) -> EndpointRoute | None:
        return self._routes.get(endpoint)

    def set_status(self, endpoint: str, status: str | None) -> None:
        if status is None:
            self._status.pop(endpoint, None)
            self._cannot_start.pop(endpoint, None)
        else:
            self._status[endpoint] = status

    def set_cannot_start(self, endpoint: str, reason: str | None) -> None:
        """Why the instances of an unrouted InService endpoint cannot start (None: they can again)."""
        if reason is None:
            self._cannot_start.pop(endpoint, None)
        else:
            self._cannot_start[endpoint] = reason

    def resolve(self, endpoint: str, target_variant: str | None) -> RoutedVariant:
        """The variant runtime for this request, or the error SageMaker gives (must-match 10)."""
        route = self._routes.get(endpoint)
        if route is not None:
            return route.pick(target_variant, self.account)
        status = self._status.get(endpoint)
        if status is None:
            raise ValidationError(f"Endpoint {endpoint} of account {self.account} not found.")
        reason = self._cannot_start.get(endpoint)
        if reason is not None and status == "InService":
            raise ServiceUnavailable(
                f"The instances of endpoint {endpoint} cannot start; moorage retries with backoff. {reason}"
            )
        if status == "InService" or status == "Updating":
            raise ServiceUnavailable(
                f"The instances of endpoint {endpoint} are starting; retry the request in a few seconds."
            )
        raise ValidationError(
            f"Endpoint {endpoint} of account {self.account} is {status}; "
            "it can be invoked once it is InService."
        )
