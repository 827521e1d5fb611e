"""Model archives whose handler says which code ran, and where their trees land in a server's cache.

Shared by the tests of the cache's integrity and disk budget (tests/integration/artifacts/).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from moorage.examples.builders import pack
from support.servers import RunningServer, start_server, wait_until_gone

# The handler answers with what model_fn returned; tampered code appended to it changes the answer.
CLEAN_HANDLER = """\
import json


def model_fn(model_dir):
    return "clean"


def input_fn(body, content_type):
    return body


def predict_fn(data, model):
    return {"served": model}


def output_fn(prediction, accept):
    return json.dumps(prediction)
"""
# What the probe's handler appended to another model's tree (security-probe-2 B2, row 66).
TAMPER = '\n\ndef model_fn(model_dir):\n    return "tampered"\n'


def serving(tmp_path_factory: pytest.TempPathFactory, env: Mapping[str, str]) -> Iterator[RunningServer]:
    """The body of a module-scoped server fixture: `moorage serve` with `env`, stopped with nothing left."""
    running = start_server(tmp_path_factory.mktemp("server") / "data", env=env)
    yield running
    running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


def handler_archive(root: Path, name: str, *, weights_bytes: int = 16) -> Path:
    """<root>/<name>.tar.gz: CLEAN_HANDLER and `weights_bytes` of random (incompressible) weights.

    A random note makes every archive's digest, and so its tree in the cache, its own.
    """
    model_dir = root / name
    (model_dir / "code").mkdir(parents=True)
    (model_dir / "code" / "inference.py").write_text(CLEAN_HANDLER)
    (model_dir / "model.bin").write_bytes(os.urandom(weights_bytes))
    (model_dir / "note.txt").write_text(uuid.uuid4().hex)
    return pack(model_dir, root / f"{name}.tar.gz")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_of(data_dir: Path, archive: Path) -> Path:
    """Where the server's cache extracts `archive` (the tree is named by the archive's sha256)."""
    return data_dir / "cache" / "models" / f"sha256-{sha256_of(archive)}"


def model_of(sm: Any, endpoint: str) -> str:
    """The model name of an endpoint's only variant (tests.support.hosting.deploy makes it up)."""
    config = sm.describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]
    variants = sm.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
    return str(variants[0]["ModelName"])


def deployment_log(data_dir: Path, endpoint: str, variant: str = "AllTraffic") -> str:
    return (data_dir / "logs" / endpoint / variant / "deployment.log").read_text(errors="replace")
