"""`moorage serve-model --multi-model ROOT` answers SageMaker's multi-model container API with its status
codes (spec §c.1): POST/GET/DELETE /models, GET /models/{name}, POST /models/{name}/invoke; 409 for a
model loaded twice, 404 for one that is not loaded, 507 when memory is short, 400 for a url outside ROOT,
500 with the reason when model_fn fails.
"""

from __future__ import annotations

import json
import tarfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from support.multi_model import archive
from support.servers import start_model_server, wait_until_gone

pytestmark = pytest.mark.slow

BUDGET = 48 * 1024 * 1024


def send(method: str, url: str, document: Any = None) -> tuple[int, Any]:
    """(status, parsed JSON body) for any status."""
    data = json.dumps(document).encode() if document is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=90) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_the_multi_model_container_api(tmp_path: Path) -> None:
    root = tmp_path / "models"
    root.mkdir()
    archive(tmp_path, "alpha", operation="sum").rename(root / "alpha.tar.gz")
    # the platform's own layout: a directory holding the extracted archive
    with tarfile.open(archive(tmp_path, "beta", operation="max")) as packed:
        packed.extractall(root / "beta" / "model", filter="data")
    archive(tmp_path, "huge", weights_bytes=BUDGET + 1024 * 1024).rename(root / "huge.tar.gz")
    # model_fn fails: the gate it asks is a port nobody listens on
    archive(tmp_path, "broken", fail_unless="http://127.0.0.1:9/").rename(root / "broken.tar.gz")
    server = start_model_server(
        root, tmp_path / "data", args=["--multi-model"], env={"MOORAGE_MME_MEMORY_BYTES": str(BUDGET)}
    )
    try:
        models = server.url + "/models"
        assert send("POST", models, {"model_name": "a", "url": str(root / "alpha.tar.gz")}) == (
            200,
            {"status": 'Model "a" loaded'},
        )
        status, body = send("POST", models, {"model_name": "a", "url": str(root / "alpha.tar.gz")})
        assert (status, body["code"], body["type"]) == (409, 409, "ConflictStatusException")
        assert send("POST", models, {"model_name": "b", "url": "beta/model"})[0] == 200
        assert send("GET", models) == (
            200,
            {
                "models": [
                    {"modelName": "a", "modelUrl": str(root / "alpha.tar.gz")},
                    {"modelName": "b", "modelUrl": "beta/model"},
                ]
            },
        )
        assert send("GET", models + "/b") == (200, {"modelName": "b", "modelUrl": "beta/model"})
        status, answer = send("POST", models + "/a/invoke", {"x": [1, 2, 4]})
        assert (status, answer["model"], answer["answer"]) == (200, "alpha", 7)
        assert send("POST", models + "/b/invoke", {"x": [1, 2, 4]})[1]["answer"] == 4
        assert send("POST", models + "/nope/invoke", {"x": [1]})[0] == 404
        assert send("DELETE", models + "/a") == (200, {"status": 'Model "a" unloaded'})
        assert send("DELETE", models + "/a")[0] == 404
        assert send("GET", models + "/a")[0] == 404
        status, body = send("POST", models, {"model_name": "h", "url": "huge.tar.gz"})
        assert (status, body["type"]) == (507, "InsufficientMemoryException")
        status, body = send("POST", models, {"model_name": "f", "url": "broken.tar.gz"})
        assert (status, body["type"]) == (500, "InternalServerException")
        assert "Failed to load TargetModel f" in body["message"] and "its gate is closed" in body["message"]
        status, body = send("POST", models, {"model_name": "x", "url": "/etc"})
        assert (status, body["type"]) == (400, "BadRequestException")
        assert "is not under" in body["message"]
        assert send("GET", models)[1] == {"models": [{"modelName": "b", "modelUrl": "beta/model"}]}
    finally:
        server.stop()
    assert not wait_until_gone(server.tag)
