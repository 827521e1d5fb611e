"""Reading the server's `/metrics` from a command: the signed GET and the Prometheus text's samples.

`moorage queue` and `moorage models` show figures SageMaker keeps in CloudWatch; moorage publishes them
as gauges on `/metrics`, so both commands read them there, signed like any other call (a server with
`--auth sigv4` checks it).
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Container, Iterator
from typing import TYPE_CHECKING, Any

from moorage.errors import MoorageError

if TYPE_CHECKING:
    from moorage.sdk import Connection

__all__ = ["read_metrics", "samples"]

_TIMEOUT_S = 10.0
_LINE = re.compile(r"^(?P<name>\w+)\{(?P<labels>.*)\} (?P<value>\S+)$")
_LABEL = re.compile(r'(?P<key>\w+)="(?P<value>(?:[^"\\]|\\.)*)"')


def read_metrics(connection: Connection) -> str:
    """GET /metrics, signed with the connection's credentials (SigV4, as the SDK signs its calls)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    url = f"{connection.url}/metrics"
    request = AWSRequest(method="GET", url=url)
    credentials: Any = connection.session.get_credentials()
    if credentials is not None:
        SigV4Auth(credentials.get_frozen_credentials(), "sagemaker", connection.region).add_auth(request)
    headers = {key: str(value) for key, value in request.headers.items()}
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=_TIMEOUT_S
        ) as answer:
            return str(answer.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        raise MoorageError(f"the server refused to show its metrics ({exc.code}): {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise MoorageError(f"cannot read {url}: {exc}") from None


def samples(text: str, names: Container[str]) -> Iterator[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of each labelled sample in Prometheus text whose name is in `names`."""
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None or match["name"] not in names:
            continue
        labels = {m["key"]: _unescape(m["value"]) for m in _LABEL.finditer(match["labels"])}
        yield match["name"], labels, float(match["value"])


def _unescape(value: str) -> str:
    return value.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
