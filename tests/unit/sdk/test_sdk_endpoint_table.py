"""`moorage.list_endpoints()`'s table: aligned text for a terminal, escaped HTML for Jupyter."""

from __future__ import annotations

from datetime import UTC, datetime

from moorage.sdk.endpoints import EndpointRow, EndpointTable

ROWS = [
    EndpointRow("seed", "InService", 2, 2, ("AllTraffic",), datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)),
    EndpointRow(
        "broken-<b>",
        "InService",
        0,
        1,
        ("A", "B"),
        None,
        "The instances of this endpoint cannot start; moorage retries with backoff.\nlog line",
    ),
]


def test_the_text_table_aligns_columns_and_says_why_an_endpoint_cannot_start() -> None:
    assert repr(EndpointTable(ROWS)).splitlines() == [
        "Endpoint    Status     Instances  Variants    Created",
        "seed        InService  2/2        AllTraffic  2026-12-05 10:00:00",
        "broken-<b>  InService  0/1        A, B",
        "broken-<b>: The instances of this endpoint cannot start; moorage retries with backoff.",
    ]


def test_the_html_table_escapes_what_it_shows() -> None:
    shown = EndpointTable(ROWS)._repr_html_()
    assert shown.startswith("<table><thead><tr><th>Endpoint</th><th>Status</th>")
    assert "<td>broken-&lt;b&gt;</td><td>InService</td><td>0/1</td><td>A, B</td><td></td>" in shown
    assert "<b>" not in shown


def test_no_endpoints_says_so() -> None:
    assert repr(EndpointTable([])) == "No endpoints."
    assert EndpointTable([])._repr_html_() == "<p>No endpoints.</p>"
