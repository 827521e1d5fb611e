"""The seed tutorial's handler, unchanged, served by Handler: ResNet-50, an image fetched by URL."""

from __future__ import annotations

import functools
import json
import shutil
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import models

from moorage.handler.pipeline import Handler, HandlerOptions, HandlerRequest

SEED_MODULE = Path(__file__).with_name("seed_inference.py")
CLASSES = {"Leopards", "airplanes", "butterfly", "camera", "elephant", "lamp", "rhino", "umbrella", "watch"}


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def image_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A small PNG served over HTTP on 127.0.0.1 (the tutorial's input_fn downloads its image)."""
    www = tmp_path / "www"
    www.mkdir()
    pixels = np.random.default_rng(7).integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(www / "test.png")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, name="test-image-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/test.png"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@pytest.fixture
def seed_model_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """model_0.pth (ResNet-50 + the tutorial's head, seeded random weights) and code/inference.py."""
    model_dir = tmp_path / "model"
    (model_dir / "code").mkdir(parents=True)
    torch.manual_seed(0)
    model = models.resnet50(weights=None)
    model.fc = torch.nn.Sequential(
        torch.nn.Linear(model.fc.in_features, 2048),
        torch.nn.ReLU(inplace=True),
        torch.nn.Linear(2048, 10),
        torch.nn.Dropout(0.4),
        torch.nn.LogSoftmax(dim=1),
    )
    with torch.no_grad():
        # The tutorial names only 9 classes for its 10 outputs: keep output 9 out of its top 3.
        model.fc[2].bias[9] = -100.0
    torch.save(model.state_dict(), model_dir / "model_0.pth")
    shutil.copyfile(SEED_MODULE, model_dir / "code" / "inference.py")
    monkeypatch.syspath_prepend(str(model_dir / "code"))
    monkeypatch.chdir(model_dir)  # as the worker does
    yield model_dir
    sys.modules.pop("inference", None)


# The tutorial calls resnet50(pretrained=False), which torchvision now warns about (twice).
@pytest.mark.filterwarnings("ignore:The parameter 'pretrained' is deprecated:UserWarning")
@pytest.mark.filterwarnings("ignore:Arguments other than a weight enum:UserWarning")
def test_the_seed_handler_runs_unchanged(seed_model_dir: Path, image_url: str) -> None:
    handler = Handler.load(model_dir=seed_model_dir, program="inference", options=HandlerOptions())
    assert handler.user_module == "inference"
    body = json.dumps({"url": image_url}).encode()  # what the SDK's JSONSerializer sends
    response = handler.transform(
        HandlerRequest(
            body=body,
            content_type="application/json",
            accept="application/json",
            headers=(("Content-Type", "application/json"), ("Accept", "application/json")),
            request_id="seed-1",
        )
    )
    assert response.status == 200, response.log
    assert response.content_type == "application/json"  # from output_fn's (body, accept) tuple
    predictions = json.loads(response.body)
    assert [sorted(p) for p in predictions] == [["prediction", "score"]] * 3
    assert {p["prediction"] for p in predictions} <= CLASSES
    scores = [float(p["score"].rstrip("%")) for p in predictions]
    assert scores == sorted(scores, reverse=True)
    assert 0 < sum(scores) <= 100.0001

    # The tutorial's output_fn refuses any other Accept with a plain Exception: 500 with its text.
    refused = handler.transform(HandlerRequest(body, "application/json", "text/csv", (), request_id="seed-2"))
    assert (refused.status, refused.body) == (500, b"Requested unsupported ContentType in Accept:text/csv")
