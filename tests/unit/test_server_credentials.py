"""The server's AWS keys leave its environment at start and reach only the AWS clients it makes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from moorage import server_credentials


@pytest.fixture(autouse=True)
def forget() -> Iterator[None]:
    yield
    server_credentials._held = None


def test_keys_move_out_of_the_environment_into_the_servers_sessions() -> None:
    environ = {
        "AWS_ACCESS_KEY_ID": "AKIASERVEROWNKEY0000",
        "AWS_SECRET_ACCESS_KEY": "server-own-secret",
        "AWS_SESSION_TOKEN": "token",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "HOME": "/home/x",
    }

    assert server_credentials.take_from(environ) is True

    assert environ == {"AWS_DEFAULT_REGION": "eu-west-1", "HOME": "/home/x"}
    credentials = server_credentials.session().get_credentials()
    assert credentials is not None
    frozen = credentials.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (
        "AKIASERVEROWNKEY0000",
        "server-own-secret",
        "token",
    )


def test_half_a_key_pair_is_removed_and_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {"AWS_ACCESS_KEY_ID": "AKIAONLYTHEID0000000"}

    assert server_credentials.take_from(environ) is False

    assert environ == {}


def test_without_keys_the_session_uses_boto3s_usual_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-the-chain")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "chain-secret")

    credentials = server_credentials.session().get_credentials()

    assert credentials is not None
    assert credentials.get_frozen_credentials().access_key == "from-the-chain"
