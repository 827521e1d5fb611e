"""`moorage logs` option parsing: --since and where the server is."""

from __future__ import annotations

import datetime

import pytest

from moorage.cli import build_parser
from moorage.commands.logs import DEFAULT_URL, parse_since, server_url
from moorage.errors import ConfigError

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds_back"),
    [("30s", 30), ("10m", 600), ("1.5h", 5400), ("2d", 172_800), ("1w", 604_800), (" 5m ", 300)],
)
def test_since_durations(text: str, seconds_back: float) -> None:
    assert parse_since(text, NOW) == int((NOW - seconds_back) * 1000)


def test_since_times() -> None:
    assert parse_since("2023-11-14T22:13:20+00:00", NOW) == 1_700_000_000_000
    naive = datetime.datetime(2023, 11, 14, 12, 0, 0)
    assert parse_since("2023-11-14 12:00:00", NOW) == int(naive.timestamp() * 1000)
    assert parse_since(None, NOW) is None


@pytest.mark.parametrize("text", ["10", "ten minutes", "5y", "-5m", ""])
def test_bad_since_is_a_usage_error(text: str) -> None:
    with pytest.raises(ConfigError, match="--since"):
        parse_since(text, NOW)


def test_server_url_precedence() -> None:
    env = {"MOORAGE_URL": "http://m:1", "AWS_ENDPOINT_URL_SAGEMAKER": "http://s:2"}
    assert server_url("http://flag:3", env) == "http://flag:3"
    assert server_url(None, env) == "http://m:1"
    assert server_url(None, {"AWS_ENDPOINT_URL_SAGEMAKER": "http://s:2"}) == "http://s:2"
    assert server_url(None, {}) == DEFAULT_URL == "http://127.0.0.1:8080"


def test_the_command_is_registered() -> None:
    args = build_parser().parse_args(["logs", "ep", "-f", "--since", "10m", "--variant", "Canary"])
    assert (args.endpoint, args.follow, args.since, args.variant, args.url) == (
        "ep",
        True,
        "10m",
        "Canary",
        None,
    )
