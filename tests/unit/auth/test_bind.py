"""While auth is off, `moorage serve` listens on loopback only unless told otherwise (matrix row 15)."""

from __future__ import annotations

from pathlib import Path

import pytest

from moorage.cli import EXIT_USAGE, main
from moorage.commands.serve import check_bind
from moorage.errors import ConfigError


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_binds_need_no_flag(host: str) -> None:
    check_bind(host, False, auth_on=False)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.com", "::ffff:1.2.3.4"]
)
def test_other_binds_are_refused_without_auth(host: str) -> None:
    with pytest.raises(ConfigError, match="--auth sigv4, or pass --allow-public-bind"):
        check_bind(host, False, auth_on=False)
    check_bind(host, True, auth_on=False)  # the user said so explicitly
    check_bind(host, False, auth_on=True)  # every request is authenticated


def test_serve_refuses_a_wildcard_bind_before_opening_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert main(["serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(data)]) == EXIT_USAGE
    assert "Refusing to listen on 0.0.0.0 without authentication" in capsys.readouterr().err
    assert not data.exists()
