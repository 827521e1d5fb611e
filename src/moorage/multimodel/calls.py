"""Where InvokeEndpoint's call goes, given the TargetModel header (or its absence).

SageMaker's errors (spec §c.1, observed): the header on a single-model endpoint, and a multi-model
endpoint called without it, are both ValidationError (400) with these words.
"""

from __future__ import annotations

from moorage.errors import ServiceUnavailable, ValidationError
from moorage.multimodel.variant import MultiModelVariant
from moorage.runtime.outcomes import Outcome
from moorage.runtime.router import RoutedVariant, StartingVariant
from moorage.worker.protocol import Invoke

__all__ = ["TARGET_MODEL", "submit_call"]

TARGET_MODEL = "X-Amzn-SageMaker-Target-Model"


async def submit_call(
    variant: RoutedVariant, endpoint: str, target: str | None, message: Invoke, request_id: str
) -> Outcome:
    """The call's outcome from the variant's pool, or from the copy of its TargetModel."""
    if isinstance(variant, MultiModelVariant):
        if target is None:
            raise ValidationError(
                f"Request {request_id} is missing a target model header. Endpoint {endpoint} is a "
                "multi-model endpoint: name the model with TargetModel, a path relative to the model's "
                "ModelDataUrl (for example TargetModel='model-1.tar.gz')."
            )
        return await variant.invoke(target, message)
    if target is not None:
        if isinstance(variant, StartingVariant):  # its kind is known once its instances are back
            raise ServiceUnavailable(f"The instances of endpoint {endpoint} are starting; retry the request.")
        raise ValidationError(
            f"Endpoint {endpoint} is not a multi-model endpoint and does not support target model header."
        )
    return await variant.pool.submit(message)
