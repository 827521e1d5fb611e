"""The endpoint lifecycle as one table: which action may run in which status, and where it leads.

Both the operations (UpdateEndpoint, DeleteEndpoint, ...) and the reconciler's transitions in the
store consult `transition`, so the rules that must match SageMaker (spec §3.4, must-match 3 and 6)
live in one place and nowhere else.
"""

from __future__ import annotations

from enum import Enum, StrEnum

from moorage.control.records import EndpointStatus

__all__ = ["Action", "Refusal", "refusal", "transition"]


class Action(StrEnum):
    # What clients ask for.
    UPDATE = "UpdateEndpoint"
    UPDATE_WEIGHTS = "UpdateEndpointWeightsAndCapacities"
    DELETE = "DeleteEndpoint"
    # What the reconciler reports (through the store).
    IN_SERVICE = "endpoint_in_service"  # every instance of the pending deployment is ready
    FAIL = "endpoint_failed"  # the deployment being created could not start
    UPDATE_FAIL = "update_failed"  # the deployment replacing the serving one could not start
    SET_VARIANTS = "set_variant_states"  # current instance counts and weights changed
    REMOVE = "remove_endpoint"  # drained after DeleteEndpoint; the record goes


_S = EndpointStatus
_A = Action

# status → {action allowed in it: status after it}. An action missing from a status is refused.
_TABLE: dict[EndpointStatus, dict[Action, EndpointStatus]] = {
    # CreateEndpoint accepted; instances start. SageMaker counts it as in progress: no update or delete
    # until it settles (spec §3.4).
    _S.CREATING: {_A.IN_SERVICE: _S.IN_SERVICE, _A.FAIL: _S.FAILED, _A.SET_VARIANTS: _S.CREATING},
    # Serving. The only status that takes updates; delete starts the drain.
    _S.IN_SERVICE: {
        _A.UPDATE: _S.UPDATING,
        _A.UPDATE_WEIGHTS: _S.UPDATING,
        _A.DELETE: _S.DELETING,
        _A.SET_VARIANTS: _S.IN_SERVICE,
    },
    # The old deployment serves while the new one starts; a failed update rolls back to InService
    # with FailureReason set, as SageMaker does (spec §3.4).
    _S.UPDATING: {_A.IN_SERVICE: _S.IN_SERVICE, _A.UPDATE_FAIL: _S.IN_SERVICE, _A.SET_VARIANTS: _S.UPDATING},
    # Draining, then gone. A second DeleteEndpoint changes nothing and is accepted.
    _S.DELETING: {_A.DELETE: _S.DELETING, _A.REMOVE: _S.DELETING, _A.SET_VARIANTS: _S.DELETING},
    # Could not start; FailureReason says why. DeleteEndpoint is the only thing allowed (must-match 6).
    _S.FAILED: {_A.DELETE: _S.DELETING, _A.SET_VARIANTS: _S.FAILED},
}


class Refusal(Enum):
    """Why an action is refused, as the client reads it (`{arn}` is the endpoint's ARN)."""

    IN_PROGRESS = 'Cannot update in-progress endpoint "{arn}".'  # spec §3.5, exact
    # The client-visible prefix "Cannot update failed endpoint" is what deploy scripts match on.
    FAILED = 'Cannot update failed endpoint "{arn}". A failed endpoint can only be deleted.'
    DELETING = 'Cannot update endpoint "{arn}" because it is being deleted.'
    # A reconciler transition that no longer applies (the endpoint moved on); the reconciler re-reads.
    STALE = "The endpoint is no longer in a status that allows {action}."

    def message(self, arn: str, action: Action) -> str:
        return self.value.format(arn=arn, action=action.value)


def transition(action: Action, status: EndpointStatus) -> EndpointStatus | None:
    """The status after `action`, or None when `action` is not allowed in `status`."""
    return _TABLE[status].get(action)


def refusal(action: Action, status: EndpointStatus) -> Refusal | None:
    """None when `action` is allowed in `status`; otherwise the reason it is not."""
    if action in _TABLE[status]:
        return None
    if action not in (Action.UPDATE, Action.UPDATE_WEIGHTS, Action.DELETE):
        return Refusal.STALE
    if status.in_progress:
        return Refusal.IN_PROGRESS
    if status is EndpointStatus.FAILED:
        return Refusal.FAILED
    return Refusal.DELETING
