"""The seed post's ResNet-50 handler with one change: input_fn takes the JPEG bytes themselves.

The seed's input_fn downloads the image named by a JSON `{"url": ...}`; serving the picture in the
request body is the more common shape (the peers' benchmark measures both). Everything else is the
seed's: the same head, the same preprocessing, the same `view(1, 3, 224, 224)`, the same top-3 over
nine class names (so class 9 in the top 3 raises KeyError, as in the post). bench/run.py packs it as
code/inference.py of the "resnet_bytes" model.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import torch
from PIL import Image
from torch import nn
from torchvision import models, transforms

IMAGE_TYPES = ("application/x-image", "image/jpeg", "image/png", "application/octet-stream")
CLASSES = {
    0: "Leopards",
    1: "airplanes",
    2: "butterfly",
    3: "camera",
    4: "elephant",
    5: "lamp",
    6: "rhino",
    7: "umbrella",
    8: "watch",
}
PREPROCESS = transforms.Compose(
    [
        transforms.Resize(size=256),
        transforms.CenterCrop(size=224),
        transforms.ToTensor(),
        transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ]
)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_fn(model_dir: str) -> Any:
    model = models.resnet50(weights=None)
    model.fc = nn.Sequential(
        nn.Linear(model.fc.in_features, 2048),
        nn.ReLU(inplace=True),
        nn.Linear(2048, 10),
        nn.Dropout(0.4),
        nn.LogSoftmax(dim=1),
    )
    with open(os.path.join(model_dir, "model_0.pth"), "rb") as weights:
        model.load_state_dict(torch.load(weights))
    return model.to(_device()).eval()


def input_fn(request_body: bytes, content_type: str = "application/x-image") -> Any:
    if content_type not in IMAGE_TYPES:
        raise ValueError(f"Requested unsupported ContentType in content_type {content_type}")
    with Image.open(io.BytesIO(request_body)) as picture:
        return PREPROCESS(picture.convert("RGB"))


def predict_fn(input_data: Any, model: Any) -> Any:
    batch = input_data.view(1, 3, 224, 224).to(_device())
    with torch.no_grad():
        model.eval()
        return torch.exp(model(batch))


def output_fn(prediction_output: Any, accept: str = "application/json") -> tuple[str, str]:
    scores, indices = prediction_output.topk(3, dim=1)
    scores, indices = scores.cpu().numpy()[0], indices.cpu().numpy()[0]
    result = [
        {"prediction": CLASSES[int(i)], "score": f"{s * 100}%"} for s, i in zip(scores, indices, strict=True)
    ]
    if accept == "application/json":
        return json.dumps(result), accept
    raise ValueError(f"Requested unsupported ContentType in Accept:{accept}")
