"""`make demo` (examples/demo.py), run as the Makefile runs it, on a fresh directory and free ports.

README ("What `make demo` shows"): it starts `moorage serve`, deploys the seed's ResNet-50 example on 2
instances and prints the top-3 answer for a locally served image, then trains a model on scikit-learn's
digits, deploys it and reports its accuracy measured through the endpoint, then streams a small text
model's tokens through invoke_endpoint_with_response_stream. The printed answers are
checked against the same models run in-process from the files the demo left behind: the top 3 with
the seed's own inference.py, the accuracy with the TorchScript model on the same held-out images.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest

from support.seed import seed_answer
from support.servers import base_environment, wait_until_gone

pytestmark = pytest.mark.slow

DEMO = Path(__file__).parents[2] / "examples" / "demo.py"


def in_process_accuracy(model_file: Path) -> float:
    import torch

    from moorage.examples.digits import load_digits_split

    data = load_digits_split()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, and SageMaker's format
        model = torch.jit.load(str(model_file))  # type: ignore[no-untyped-call]
    with torch.no_grad():
        scores = model(torch.from_numpy(data.test_x))
    return float((scores.argmax(dim=1).numpy() == data.test_y).mean())


def in_process_stream(model_dir: Path, request: dict[str, Any]) -> str:
    import torch

    from moorage.examples.textgen import load_text_model
    from moorage.examples.textgen_handler import generate

    model, vocab = load_text_model(model_dir)
    torch.set_num_threads(1)
    return "".join(
        generate(
            model,
            vocab,
            request["prompt"],
            request["max_new_tokens"],
            request["temperature"],
            request["seed"],
        )
    )


def test_make_demo_prints_the_answers_the_models_give(tmp_path: Path, image_server: str) -> None:
    tag = uuid.uuid4().hex
    demo_dir = tmp_path / "demo-data"
    done = subprocess.run(
        [sys.executable, str(DEMO), "--dir", str(demo_dir), "--any-port"],
        capture_output=True,
        env=base_environment(tag),
        timeout=280,
        check=False,
    )
    out = done.stdout.decode()
    assert done.returncode == 0, f"{out}\n{done.stderr.decode()}"
    assert not wait_until_gone(tag), "the demo's server outlived it"

    # The seed: "invoke {"url": ...} → top 3:" and three lines "label score".
    lines = out.splitlines()
    (at,) = [i for i, line in enumerate(lines) if "→ top 3:" in line]
    printed = [lines[at + k].strip().rsplit(" ", 1) for k in (1, 2, 3)]
    assert "endpoint seed-resnet50 InService on 2 instances" in out
    request = json.loads(lines[at].split("invoke ", 1)[1].split(" → ", 1)[0])
    # The demo's image server is gone; the same deterministic picture is served here.
    expected = seed_answer(demo_dir / "work" / "seed", json.dumps({"url": f"{image_server}/predict.png"}))
    assert request["url"].endswith("/predict.png")
    assert [[entry["prediction"], entry["score"]] for entry in expected] == [
        [label.strip(), score] for label, score in printed
    ]

    # The digits: the accuracy printed is the in-process model's on the same held-out images.
    match = re.search(r"accuracy on (\d+) held-out images, measured through the endpoint: ([\d.]+)%", out)
    assert match, out
    accuracy = in_process_accuracy(demo_dir / "work" / "digits" / "model.pt")
    assert match.group(2) == f"{accuracy:.1%}".rstrip("%")
    assert accuracy > 0.9, "the demo's point: answers that mean something"
    assert "fileb://digit.json" in out and "--cli-binary-format" not in out  # works with aws CLI 1.x

    # The stream: the text printed token by token is what the trained model samples in-process with the
    # same request, and every token came in a PayloadPart of its own.
    at = next(i for i, line in enumerate(lines) if "endpoint textgen streams:" in line)
    request = json.loads(lines[at].split("invoke_endpoint_with_response_stream ", 1)[1].split(" →", 1)[0])
    end = next(i for i in range(at, len(lines)) if "PayloadParts: the first after" in lines[i])
    printed_text = "\n".join(line.removeprefix("      ") for line in lines[at + 1 : end])
    expected_text = in_process_stream(demo_dir / "work" / "textgen", request)
    assert printed_text == request["prompt"] + expected_text
    tokens = len(expected_text)
    assert tokens == request["max_new_tokens"]
    assert f"{tokens} tokens in {tokens} PayloadParts" in lines[end]
