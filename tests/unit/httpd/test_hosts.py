"""The browser-safety decision (httpd/hosts.py) as a pure function of a request's headers."""

from __future__ import annotations

import logging

import pytest

from moorage.errors import ConfigError
from moorage.httpd import Headers, Request
from moorage.httpd.hosts import BrowserGuard, ServerNames, split_authority
from moorage.httpd.messages import BodyReader
from moorage.httpd.notices import ThrottledLog


def request(*headers: tuple[str, str], client: str = "127.0.0.1") -> Request:
    return Request(
        method="POST",
        path="/b",
        raw_path="/b",
        query_string="delete",
        headers=Headers(list(headers)),
        client=(client, 50000),
        reader=BodyReader(pause=lambda: None, resume=lambda: None, expect_continue=None),
        content_length=0,
    )


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("LocalHost.:9000", ("localhost", 9000)),
        ("localhost", ("localhost", None)),
        ("[::1]:80", ("::1", 80)),
        ("[0:0::1]", ("::1", None)),
        ("example.org:", ("example.org", None)),
        ("::1", None),  # IPv6 needs brackets in a Host
        ("a, b", None),  # two Host headers, joined
        ("x:99999", None),
        ("x:8o", None),
        ("[zz]:1", None),
        ("user@host", None),
        ("", None),
    ],
)
def test_split_authority(value: str, parsed: tuple[str, int | None] | None) -> None:
    assert split_authority(value) == parsed


def test_loopback_localhost_the_bound_address_and_listed_names_are_admitted() -> None:
    names = ServerNames("192.0.2.7", ["models.internal:8080", "2001:db8::5", "LB.Example."])
    for host in ("127.0.0.1", "127.0.0.2", "::1", "::ffff:7f00:1", "localhost", "192.0.2.7"):
        assert names.admits(host), host
    for host in ("models.internal", "2001:db8::5", "lb.example"):
        assert names.admits(host), host
    for host in ("attacker.example", "192.0.2.8", "localhost.attacker.example", "2001:db8::6"):
        assert not names.admits(host), host
    assert names.describe() == (
        "127.0.0.1, localhost, [::1], 192.0.2.7, models.internal, [2001:db8::5], lb.example"
    )


def test_a_wildcard_bind_admits_any_ip_literal_but_no_foreign_name() -> None:
    names = ServerNames("0.0.0.0")
    assert names.admits("10.1.2.3") and names.admits("2001:db8::1")
    assert not names.admits("attacker.example")


def test_a_star_turns_the_host_check_off() -> None:
    assert ServerNames("127.0.0.1", ["*"]).admits("anything.example")


def test_a_malformed_listed_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="MOORAGE_SERVER_NAMES: 'a/b'"):
        ServerNames("127.0.0.1", ["a/b"])


OPEN = BrowserGuard.for_server("127.0.0.1", (), auth_on=False)
SIGNED = BrowserGuard.for_server("127.0.0.1", (), auth_on=True)


@pytest.mark.parametrize(
    "headers",
    [
        (),  # HTTP/1.0 without Host: never a browser
        (("Host", "127.0.0.1:9000"),),
        (("Host", "localhost:9000"), ("Origin", "http://localhost:9000")),
        (("Host", "127.0.0.1"), ("Origin", "http://127.0.0.1:80")),
        (("Host", "127.0.0.1:9000"), ("Sec-Fetch-Site", "same-origin")),
        (("Host", "127.0.0.1:9000"), ("Sec-Fetch-Site", "none")),
    ],
)
def test_own_origin_and_plain_clients_pass(headers: tuple[tuple[str, str], ...]) -> None:
    assert OPEN.check(request(*headers)) is None
    assert SIGNED.check(request(*headers)) is None


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ((("Host", "127.0.0.1:9000"), ("Origin", "http://evil.example")), "Origin: http://evil.example"),
        ((("Host", "127.0.0.1:9000"), ("Origin", "null")), "Origin: null"),
        ((("Host", "127.0.0.1:9000"), ("Origin", "http://127.0.0.1:3000")), "Origin: http://127.0.0.1:3000"),
        ((("Host", "127.0.0.1:9000"), ("Origin", "http://localhost:9000")), "Origin: http://localhost:9000"),
        ((("Host", "127.0.0.1:9000"), ("Sec-Fetch-Site", "cross-site")), "Sec-Fetch-Site: cross-site"),
        ((("Host", "127.0.0.1:9000"), ("Sec-Fetch-Site", "same-site")), "Sec-Fetch-Site: same-site"),
    ],
)
def test_cross_origin_requests_are_refused_while_auth_is_off(
    headers: tuple[tuple[str, str], ...], fragment: str
) -> None:
    message = OPEN.check(request(*headers))
    assert message is not None and fragment in message and "--auth sigv4" in message
    assert SIGNED.check(request(*headers)) is None  # a page cannot sign: the Host rule alone applies


@pytest.mark.parametrize("host", ["attacker.example:9000", "127.0.0.1:9000, evil", "127.1"])
def test_a_foreign_host_is_refused_with_or_without_auth(host: str) -> None:
    for guard in (OPEN, SIGNED):
        message = guard.check(request(("Host", host)))
        assert message is not None
        assert "is not one of this server's names (127.0.0.1, localhost, [::1])" in message
        assert message.endswith("add it to MOORAGE_SERVER_NAMES.")


def test_refusals_are_logged_once_per_client_and_kind_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    guard = BrowserGuard.for_server("127.0.0.1", (), auth_on=False)
    with caplog.at_level(logging.WARNING, logger="moorage.httpd"):
        for _ in range(100):
            guard.check(request(("Host", "attacker.example")))
            guard.check(request(("Host", "attacker.example"), client="127.0.0.9"))
            guard.check(request(("Host", "127.0.0.1"), ("Origin", "http://evil.example")))
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith(
        "refused a foreign Host from 127.0.0.1: POST /b: Host header 'attacker.example'"
    )
    assert lines[1].startswith("refused a foreign Host from 127.0.0.9: ")
    assert lines[2].startswith("refused a cross-origin request from 127.0.0.1: ")


def test_the_throttled_log_reports_how_many_it_left_out(caplog: pytest.LogCaptureFixture) -> None:
    notices = ThrottledLog(logging.getLogger("moorage.test"), interval_s=0.0)
    quiet = ThrottledLog(logging.getLogger("moorage.test"), interval_s=3600.0)
    with caplog.at_level(logging.WARNING, logger="moorage.test"):
        notices.warning("10.0.0.1", "a thing", "first")
        notices.warning("10.0.0.1", "a thing", "second")
        for _ in range(5):
            quiet.warning("10.0.0.1", "a thing", "flood")
    assert [record.getMessage() for record in caplog.records] == [
        "refused a thing from 10.0.0.1: first",
        "refused a thing from 10.0.0.1: second",
        "refused a thing from 10.0.0.1: flood",
    ]
    quiet.interval_s = 0.0
    with caplog.at_level(logging.WARNING, logger="moorage.test"):
        quiet.warning("10.0.0.1", "a thing", "later")
    assert caplog.records[-1].getMessage() == (
        "refused a thing from 10.0.0.1: later (4 more like it since the last report)"
    )
