"""Which variant, and so which worker pool, a request to an endpoint goes to right now.

The reconciler publishes a route when an endpoint's deployment is up and swaps it atomically during
a blue/green update; invocations only read. An endpoint that exists but has no route (Creating,
Failed, Deleting, or InService while its instances restart after a server restart) is reported as
such, so the edge can say which.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field

from moorage.errors import ServiceUnavailable, ValidationError
from moorage.runtime.variant import VariantRuntime

__all__ = ["EndpointRoute", "Router"]


@dataclass(frozen=True)
class EndpointRoute:
    endpoint: str
    variants: dict[str, VariantRuntime]
    weights: dict[str, float]
    _cumulative: list[float] = field(default_factory=list, repr=False)
    _names: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        total = 0.0
        for name in self.variants:
            weight = self.weights.get(name, 0.0)
            if weight > 0:
                total += weight
                self._cumulative.append(total)
                self._names.append(name)

    def pick(self, target_variant: str | None, account: str) -> VariantRuntime:
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

    def publish(self, route: EndpointRoute) -> None:
        self._routes[route.endpoint] = route

    def withdraw(self, endpoint: str) -> EndpointRoute | None:
        return self._routes.pop(endpoint, None)

    def route(self, endpoint: str) -> EndpointRoute | None:
        return self._routes.get(endpoint)

    def set_status(self, endpoint: str, status: str | None) -> None:
        if status is None:
            self._status.pop(endpoint, None)
        else:
            self._status[endpoint] = status

    def resolve(self, endpoint: str, target_variant: str | None) -> VariantRuntime:
        """The variant runtime for this request, or the error SageMaker gives (must-match 10)."""
        route = self._routes.get(endpoint)
        if route is not None:
            return route.pick(target_variant, self.account)
        status = self._status.get(endpoint)
        if status is None:
            raise ValidationError(f"Endpoint {endpoint} of account {self.account} not found.")
        if status == "InService" or status == "Updating":
            raise ServiceUnavailable(
                f"The instances of endpoint {endpoint} are starting; retry the request in a few seconds."
            )
        raise ValidationError(
            f"Endpoint {endpoint} of account {self.account} is {status}; "
            "it can be invoked once it is InService."
        )
