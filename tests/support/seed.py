"""The seed's answer computed in-process: its inference.py, unchanged, called as SageMaker's toolkit calls it.

A served answer is right when it equals this one, so hosting tests compare against it instead of
hard-coding labels that depend on the seeded weights.
"""

from __future__ import annotations

import importlib.util
import json
import uuid
import warnings
from pathlib import Path
from typing import Any


def seed_answer(model_dir: Path, body: str | bytes) -> list[dict[str, Any]]:
    """model_fn → input_fn → predict_fn → output_fn on `body` (a JSON request), as the top-3 list."""
    spec = importlib.util.spec_from_file_location(
        f"seed_{uuid.uuid4().hex}", model_dir / "code" / "inference.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    text = body.decode() if isinstance(body, bytes) else body
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision deprecates `pretrained=False`, which the seed uses
        spec.loader.exec_module(module)
        model = module.model_fn(str(model_dir))
        result, content_type = module.output_fn(
            module.predict_fn(module.input_fn(text, "application/json"), model), "application/json"
        )
    assert content_type == "application/json"
    answer: list[dict[str, Any]] = json.loads(result)
    return answer


def seed_top3(model_dir: Path, body: str | bytes) -> list[str]:
    """Only the three predicted labels of `seed_answer`."""
    return [entry["prediction"] for entry in seed_answer(model_dir, body)]
