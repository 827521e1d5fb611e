"""Extracted trees are freed when no model needs them, and evicted when the cache is over its budget.

security-probe-2 row 40: a 10 GiB tree stayed in cache/models after DeleteEndpoint and DeleteModel,
and nothing ever evicted anything. Each model here has 1 MiB of random weights, so its tree is a
little over 1 MiB; the budgeted server keeps MOORAGE_CACHE_MAX_BYTES at 2.5 MiB (two trees fit).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.hosting import deploy
from support.model_trees import handler_archive, model_of, serving, tree_of
from support.servers import RunningServer

pytestmark = pytest.mark.slow

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from serving(tmp_path_factory, {"MOORAGE_CACHE_MAX_BYTES": str(5 * MIB // 2)})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from serving(tmp_path_factory, {})


def delete_endpoint(server: RunningServer, name: str) -> None:
    sm = server.client("sagemaker")
    sm.delete_endpoint(EndpointName=name)
    sm.get_waiter("endpoint_deleted").wait(
        EndpointName=name, WaiterConfig={"Delay": 0.25, "MaxAttempts": 400}
    )


def present(server: RunningServer, *archives: Path) -> list[bool]:
    return [tree_of(server.data_dir, archive).is_dir() for archive in archives]


def test_the_least_recently_used_unused_tree_goes_and_trees_in_use_stay(
    budgeted: RunningServer, tmp_path: Path
) -> None:
    sm = budgeted.client("sagemaker")
    a, b, c, d, e = (handler_archive(tmp_path, name, weights_bytes=MIB) for name in "abcde")
    delete_endpoint(budgeted, deploy(sm, a))
    delete_endpoint(budgeted, deploy(sm, b))
    assert present(budgeted, a, b) == [True, True]  # unused, their models still exist, in budget

    live_c = deploy(sm, c)
    assert present(budgeted, a, b, c) == [False, True, True]  # a was used least recently

    deploy(sm, d)
    assert present(budgeted, b, c, d) == [False, True, True]

    deploy(sm, e)  # over budget, but c, d and e all serve: none of them goes
    assert present(budgeted, c, d, e) == [True, True, True]

    delete_endpoint(budgeted, live_c)  # c is unused now, and the cache is still over budget
    assert present(budgeted, c, d, e) == [False, True, True]
    assert "evicted the unused tree sha256:" in budgeted.log()


def test_delete_model_frees_its_tree_once_no_endpoint_uses_it(server: RunningServer, tmp_path: Path) -> None:
    sm = server.client("sagemaker")
    first, second = handler_archive(tmp_path, "first"), handler_archive(tmp_path, "second")

    endpoint = deploy(sm, first)
    model = model_of(sm, endpoint)
    delete_endpoint(server, endpoint)
    assert present(server, first) == [True]  # the model may be deployed again
    sm.delete_model(ModelName=model)
    assert present(server, first) == [False]
    assert f"model {model} was deleted" in server.log()

    endpoint = deploy(sm, second)
    sm.delete_model(ModelName=model_of(sm, endpoint))
    assert present(server, second) == [True]  # its endpoint still serves from it
    delete_endpoint(server, endpoint)
    assert present(server, second) == [False]
    assert "nothing uses it any more" in server.log()
