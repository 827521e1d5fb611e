"""A fleet (the running variants of one deployment) and the route that sends traffic to it.

The reconciler keeps one fleet per endpoint; a guarded update (`rollout.py`) holds a second, the new
fleet, while traffic moves to it. A deployment's shadow variant runs in the same fleet but is never
picked for a caller's request: the route names it apart, with the share of requests it is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from moorage.control.records import Deployment, VariantState
from moorage.runtime.router import EndpointRoute, RoutedVariant
from moorage.runtime.variant import VariantRuntime

__all__ = ["Fleet", "deployment_route", "fleet_route", "fleet_states", "shadow_share"]


@dataclass
class Fleet:
    deployment: Deployment
    variants: dict[str, VariantRuntime]


def shadow_share(deployment: Deployment) -> float:
    """The share of requests copied to the shadow variant: its InitialVariantWeight relative to the
    production variant's (SageMaker's traffic sampling percentage), at most 1."""
    production = [spec for spec in deployment.variants if not spec.shadow]
    shadows = [spec for spec in deployment.variants if spec.shadow]
    if not shadows:
        return 0.0
    base = sum(spec.weight for spec in production)
    if base <= 0:
        return 1.0 if shadows[0].weight > 0 else 0.0
    return min(1.0, shadows[0].weight / base)


def deployment_route(
    endpoint: str, deployment: Deployment, variants: Mapping[str, RoutedVariant]
) -> EndpointRoute:
    """The route to `variants` (running or starting) of `deployment`: production variants by weight,
    the shadow (if any) apart."""
    production = {spec.variant_name for spec in deployment.variants if not spec.shadow}
    shadow = next((variants[spec.variant_name] for spec in deployment.variants if spec.shadow), None)
    return EndpointRoute(
        endpoint=endpoint,
        variants={name: variant for name, variant in variants.items() if name in production},
        weights={spec.variant_name: spec.weight for spec in deployment.variants if not spec.shadow},
        shadow=shadow,
        shadow_share=shadow_share(deployment),
    )


def fleet_route(endpoint: str, fleet: Fleet) -> EndpointRoute:
    return deployment_route(endpoint, fleet.deployment, fleet.variants)


def fleet_states(fleet: Fleet) -> tuple[VariantState, ...]:
    """DescribeEndpoint's counters for a fleet that serves all its traffic."""
    return tuple(
        VariantState(
            variant_name=spec.variant_name,
            current_weight=spec.weight,
            desired_weight=spec.weight,
            current_instance_count=fleet.variants[spec.variant_name].ready_instances,
            desired_instance_count=spec.instance_count,
            shadow=spec.shadow,
        )
        for spec in fleet.deployment.variants
    )
