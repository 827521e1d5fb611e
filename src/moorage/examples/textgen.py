"""A model that streams something real: a character-level GRU trained in seconds on text Python ships.

The corpus is "The Zen of Python", read from the standard library's `this` module (its rot13 source;
importing `this` would print it), so nothing is downloaded. Training is seeded and takes a few seconds
on a CPU; the model then writes the Zen's cadence one character at a time. The handler
(`textgen_handler.py`, copied as `code/inference.py`) yields each character as it is sampled, which is
what `make demo` shows arriving through boto3's `invoke_endpoint_with_response_stream`.
"""

from __future__ import annotations

import ast
import codecs
import importlib.util
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from moorage.examples.textgen_handler import CharGRU

__all__ = ["corpus", "load_text_model", "train_text_model"]

HIDDEN = 64


def corpus() -> str:
    """The Zen of Python, decoded from the `this` module's source without importing it."""
    spec = importlib.util.find_spec("this")
    assert spec is not None and spec.origin is not None
    source = Path(spec.origin).read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "s" for target in node.targets
        ):
            return codecs.decode(ast.literal_eval(node.value), "rot13")
    raise LookupError("the `this` module has no `s` string to read the Zen of Python from")


def train_text_model(dest: Path, *, steps: int = 250, seed: int = 0) -> float:
    """Train on the corpus and write the model dir (model.pth, vocab.json, code/inference.py);
    returns the final training loss (cross-entropy per character, in nats)."""
    import torch

    from moorage.examples import textgen_handler
    from moorage.examples.textgen_handler import CharGRU

    text = corpus()
    vocab = "".join(sorted(set(text)))
    index = {char: i for i, char in enumerate(vocab)}
    data = torch.tensor([index[char] for char in text])
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small matrices: one thread is fastest, and leaves the server's cores alone
    model = CharGRU(len(vocab), hidden=HIDDEN)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    window, batch = 32, 16
    generator = torch.Generator().manual_seed(seed)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        starts = torch.randint(0, len(data) - window - 1, (batch,), generator=generator)
        inputs = torch.stack([data[s : s + window] for s in starts.tolist()])
        targets = torch.stack([data[s + 1 : s + window + 1] for s in starts.tolist()])
        logits, _ = model(inputs)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, len(vocab)), targets.reshape(-1))
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    torch.set_num_threads(threads)
    (dest / "code").mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), dest / "model.pth")
    (dest / "vocab.json").write_text(json.dumps({"vocab": vocab, "hidden": HIDDEN}))
    shutil.copyfile(textgen_handler.__file__, dest / "code" / "inference.py")
    return float(loss.detach())


def load_text_model(model_dir: Path) -> tuple[CharGRU, str]:
    """The trained model and its vocabulary, loaded as the handler's model_fn loads them."""
    from moorage.examples.textgen_handler import model_fn

    loaded = model_fn(str(model_dir))
    return loaded["model"], loaded["vocab"]
