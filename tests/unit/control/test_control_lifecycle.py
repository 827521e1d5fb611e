"""The endpoint lifecycle table (spec §3.4, must-match 3 and 6)."""

from __future__ import annotations

import pytest

from moorage.control.lifecycle import Action, Refusal, refusal, transition
from moorage.control.records import EndpointStatus

S = EndpointStatus
A = Action

ALLOWED = {
    (S.CREATING, A.IN_SERVICE): S.IN_SERVICE,
    (S.CREATING, A.FAIL): S.FAILED,
    (S.CREATING, A.SET_VARIANTS): S.CREATING,
    (S.IN_SERVICE, A.UPDATE): S.UPDATING,
    (S.IN_SERVICE, A.UPDATE_WEIGHTS): S.UPDATING,
    (S.IN_SERVICE, A.DELETE): S.DELETING,
    (S.IN_SERVICE, A.SET_VARIANTS): S.IN_SERVICE,
    (S.UPDATING, A.IN_SERVICE): S.IN_SERVICE,
    (S.UPDATING, A.UPDATE_FAIL): S.IN_SERVICE,
    (S.UPDATING, A.SET_VARIANTS): S.UPDATING,
    (S.DELETING, A.DELETE): S.DELETING,
    (S.DELETING, A.REMOVE): S.DELETING,
    (S.DELETING, A.SET_VARIANTS): S.DELETING,
    (S.FAILED, A.DELETE): S.DELETING,
    (S.FAILED, A.SET_VARIANTS): S.FAILED,
}


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("action", list(A))
def test_table(status: EndpointStatus, action: Action) -> None:
    expected = ALLOWED.get((status, action))
    assert transition(action, status) is expected
    assert (refusal(action, status) is None) == (expected is not None)


@pytest.mark.parametrize("action", [A.UPDATE, A.UPDATE_WEIGHTS, A.DELETE])
@pytest.mark.parametrize("status", [S.CREATING, S.UPDATING])
def test_in_progress_refuses_updates_and_deletes(status: EndpointStatus, action: Action) -> None:
    assert refusal(action, status) is Refusal.IN_PROGRESS


def test_failed_endpoint_can_only_be_deleted() -> None:
    assert refusal(A.UPDATE, S.FAILED) is Refusal.FAILED
    assert refusal(A.UPDATE_WEIGHTS, S.FAILED) is Refusal.FAILED
    assert refusal(A.DELETE, S.FAILED) is None


def test_deleting_refuses_updates() -> None:
    assert refusal(A.UPDATE, S.DELETING) is Refusal.DELETING


def test_reconciler_actions_that_no_longer_apply_are_stale() -> None:
    assert refusal(A.IN_SERVICE, S.DELETING) is Refusal.STALE
    assert refusal(A.FAIL, S.UPDATING) is Refusal.STALE
    assert refusal(A.REMOVE, S.IN_SERVICE) is Refusal.STALE


def test_messages() -> None:
    arn = "arn:aws:sagemaker:us-east-1:000000000000:endpoint/e"
    assert Refusal.IN_PROGRESS.message(arn, A.DELETE) == f'Cannot update in-progress endpoint "{arn}".'
    assert Refusal.FAILED.message(arn, A.UPDATE).startswith(f'Cannot update failed endpoint "{arn}".')
