"""`moorage.list_endpoints()`: the server's endpoints as a table, readable in a terminal and in Jupyter.

A notebook user wants to see at a glance what runs: a list of dicts from ListEndpoints says less than
the `moorage endpoints` command does. The table's rows come from ListEndpoints and one DescribeEndpoint
each (the instance counts are only there); its `repr` is a text table and `_repr_html_` an HTML table,
which Jupyter shows by itself. Rows are plain frozen records, so code can use them too.
"""

from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, overload

import boto3

from moorage.sdk.connection import Connection
from moorage.sdk.errors import ServiceError

__all__ = ["EndpointRow", "EndpointTable", "list_endpoints"]

_COLUMNS = ("Endpoint", "Status", "Instances", "Variants", "Created")


@dataclass(frozen=True)
class EndpointRow:
    name: str
    status: str
    instances: int  # instances that can answer now, over every variant
    desired_instances: int
    variants: tuple[str, ...]
    created: datetime | None
    failure_reason: str | None = None

    def cells(self) -> tuple[str, ...]:
        created = self.created.strftime("%Y-%m-%d %H:%M:%S") if self.created else ""
        return (
            self.name,
            self.status,
            f"{self.instances}/{self.desired_instances}",
            ", ".join(self.variants),
            created,
        )


class EndpointTable(Sequence[EndpointRow]):
    """The endpoints, newest first: a sequence of EndpointRow that prints as a table."""

    def __init__(self, rows: Sequence[EndpointRow]) -> None:
        self._rows = tuple(rows)

    @overload
    def __getitem__(self, index: int) -> EndpointRow: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[EndpointRow]: ...
    def __getitem__(self, index: int | slice) -> EndpointRow | Sequence[EndpointRow]:
        return self._rows[index]

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[EndpointRow]:
        return iter(self._rows)

    def __repr__(self) -> str:
        if not self._rows:
            return "No endpoints."
        lines = [_COLUMNS, *(row.cells() for row in self._rows)]
        widths = [max(len(line[column]) for line in lines) for column in range(len(_COLUMNS))]
        text = [
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            for line in lines
        ]
        for row in self._rows:
            if row.failure_reason:
                text.append(f"{row.name}: {row.failure_reason.splitlines()[0]}")
        return "\n".join(text)

    def _repr_html_(self) -> str:
        if not self._rows:
            return "<p>No endpoints.</p>"
        head = "".join(f"<th>{name}</th>" for name in _COLUMNS)
        body = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(cell)}</td>" for cell in row.cells())
            + "</tr>"
            + (
                f'<tr><td colspan="{len(_COLUMNS)}">{html.escape(row.failure_reason)}</td></tr>'
                if row.failure_reason
                else ""
            )
            for row in self._rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def list_endpoints(endpoint_url: str | None = None, session: boto3.Session | None = None) -> EndpointTable:
    """Every endpoint of the server (`endpoint_url`, else `MOORAGE_URL` / `AWS_ENDPOINT_URL_SAGEMAKER`)."""
    connection = Connection(endpoint_url, session)
    rows = []
    token: str | None = None
    while True:
        paging = {"NextToken": token} if token else {}
        page = connection.call("ListEndpoints", SortBy="CreationTime", SortOrder="Descending", **paging)
        for summary in page["Endpoints"]:
            try:
                described = connection.call("DescribeEndpoint", EndpointName=summary["EndpointName"])
            except ServiceError as exc:
                if "Could not find endpoint" in exc.message:
                    continue  # deleted between the list and its description
                raise
            rows.append(_row(described))
        token = page.get("NextToken")
        if not token:
            return EndpointTable(rows)


def _row(described: dict[str, Any]) -> EndpointRow:
    variants = described.get("ProductionVariants", [])
    return EndpointRow(
        name=str(described["EndpointName"]),
        status=str(described["EndpointStatus"]),
        instances=sum(int(v.get("CurrentInstanceCount", 0)) for v in variants),
        desired_instances=sum(int(v.get("DesiredInstanceCount", 0)) for v in variants),
        variants=tuple(str(v["VariantName"]) for v in variants),
        created=described.get("CreationTime"),
        failure_reason=described.get("FailureReason"),
    )
