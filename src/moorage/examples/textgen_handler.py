"""The text model's handler: copied into the model as `code/inference.py`, a SageMaker handler that
streams. Its predict_fn returns a generator, so each character it samples leaves the worker at once
(moorage's streaming extension, docs/streaming.md): as one PayloadPart through
InvokeEndpointWithResponseStream, as one HTTP chunk on a container's /invocations, and joined into one
body through InvokeEndpoint.

Request: {"prompt": "Beautiful", "max_new_tokens": 120, "temperature": 0.8, "seed": 0}. The answer is
the generated text only (the prompt is not repeated), as UTF-8 text/plain.

The model is `CharGRU`, trained by moorage.examples.textgen; this file is plain user code (torch and the
standard library only), so it runs the same in any SageMaker PyTorch container.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["CharGRU", "generate", "input_fn", "model_fn", "predict_fn"]


class CharGRU(nn.Module):
    """A character-level GRU: embedding, one GRU layer, a linear head over the vocabulary."""

    def __init__(self, vocab_size: int, hidden: int = 128, embedding: int = 32) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embedding)
        self.gru = nn.GRU(embedding, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(
        self, ids: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out, state = self.gru(self.embed(ids), state)
        return self.head(out), state


def generate(
    model: CharGRU, vocab: str, prompt: str, max_new_tokens: int, temperature: float, seed: int
) -> Iterator[str]:
    """Sample one character at a time after `prompt`; the same seed gives the same text."""
    index = {char: i for i, char in enumerate(vocab)}
    ids = [index[char] for char in prompt if char in index] or [index[" "]]
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        logits, state = model(torch.tensor([ids]))
        for _ in range(max_new_tokens):
            probabilities = torch.softmax(logits[0, -1] / max(temperature, 1e-3), dim=-1)
            chosen = int(torch.multinomial(probabilities, 1, generator=generator))
            yield vocab[chosen]
            logits, state = model(torch.tensor([[chosen]]), state)


def model_fn(model_dir: str) -> dict[str, Any]:
    with open(os.path.join(model_dir, "vocab.json")) as handle:
        meta = json.load(handle)
    model = CharGRU(len(meta["vocab"]), hidden=meta["hidden"])
    model.load_state_dict(torch.load(os.path.join(model_dir, "model.pth"), weights_only=True))
    model.eval()
    return {"model": model, "vocab": meta["vocab"]}


def input_fn(body: bytes | str, content_type: str) -> dict[str, Any]:
    request: dict[str, Any] = json.loads(body)
    return request


def predict_fn(request: dict[str, Any], loaded: dict[str, Any]) -> Iterator[str]:
    return generate(
        loaded["model"],
        loaded["vocab"],
        str(request.get("prompt", "")),
        min(int(request.get("max_new_tokens", 120)), 2000),
        float(request.get("temperature", 0.8)),
        int(request.get("seed", 0)),
    )


def output_fn(prediction: Iterator[str], accept: str) -> tuple[Iterator[str], str]:
    """The characters as they come, as text (a generator streams through output_fn unchanged)."""
    return prediction, "text/plain; charset=utf-8"
