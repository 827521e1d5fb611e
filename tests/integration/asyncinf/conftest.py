"""Shared pieces of the async inference tests: a handler that waits on a loopback gate the test
opens (support/gates.py), its model archive, and reading result objects with unchanged boto3
(support/hosting.py's `deploy` makes the endpoints, with `async_config=`).

The handler reports only through its answers and its calls to the gate (workers may soon write nothing
but their scratch dir), and it never sleeps: a gated request waits until the test opens its gate.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from moorage.examples.builders import pack
from support.gates import Gate
from support.hosting import FAST

ASYNC_HANDLER = textwrap.dedent("""
    import json
    import urllib.request


    def model_fn(model_dir):
        return {}


    def input_fn(body, content_type):
        if content_type == "application/json":
            return json.loads(body)
        return {"bytes": len(body), "content_type": content_type}


    def predict_fn(request, model):
        if request.get("gate"):  # wait until the test opens this gate
            urllib.request.urlopen(request["gate"], timeout=600).read()
        if request.get("fail"):
            raise ValueError(request["fail"])
        return request


    def output_fn(prediction, accept):
        if accept == "text/csv":
            return "echo,csv\\n", "text/csv"
        return json.dumps(prediction), "application/json"
""")


@pytest.fixture(scope="module")
def gate() -> Iterator[Gate]:
    opened = Gate()
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def async_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("async-model")
    (root / "model" / "code").mkdir(parents=True)
    (root / "model" / "code" / "inference.py").write_text(ASYNC_HANDLER)
    return pack(root / "model", root / "async.tar.gz")


def wait_for_object(s3: Any, location: str) -> dict[str, Any]:
    bucket, key = location.removeprefix("s3://").split("/", 1)
    s3.get_waiter("object_exists").wait(Bucket=bucket, Key=key, WaiterConfig=FAST)
    answer: dict[str, Any] = s3.get_object(Bucket=bucket, Key=key)
    return answer


def exists(s3: Any, location: str) -> bool:
    bucket, key = location.removeprefix("s3://").split("/", 1)
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True
