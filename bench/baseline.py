"""The in-process limit: the same handler functions called in a loop, no HTTP, no IPC, no queue.

For each workload: model_fn once, three warm-up calls, then `input_fn → predict_fn → output_fn` on
the workload's body for `--seconds`, as SageMaker's toolkit chains them (a UTF-8 body is decoded to
str first, output_fn may return `(body, content_type)`). The tiny model runs the default handlers:
moorage's (what its workers run) or, with `--chain toolkit` under the peers' venv, the toolkit's own
DefaultPytorchInferenceHandler. Torch keeps its default thread count. One JSON line per workload.

    python -m bench.baseline MANIFEST_DIR --workloads tiny,resnet_bytes --seconds 5
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.stats import percentile

__all__ = ["main"]

UTF8_TYPES = ("application/json", "text/csv")


def _default_chain(kind: str) -> SimpleNamespace:
    if kind == "toolkit":
        from sagemaker_pytorch_serving_container.default_pytorch_inference_handler import (  # type: ignore[import-not-found]
            DefaultPytorchInferenceHandler,
        )

        toolkit = DefaultPytorchInferenceHandler()
        return SimpleNamespace(
            model_fn=toolkit.default_model_fn,
            input_fn=toolkit.default_input_fn,
            predict_fn=toolkit.default_predict_fn,
            output_fn=toolkit.default_output_fn,
        )
    from moorage.handler.defaults import DefaultHandlers

    defaults = DefaultHandlers()
    return SimpleNamespace(
        model_fn=defaults.model_fn,
        input_fn=defaults.input_fn,
        predict_fn=defaults.predict_fn,
        output_fn=defaults.output_fn,
    )


def _user_module(model_dir: Path, name: str) -> Any:
    code = model_dir / "code"
    sys.path.insert(0, str(code))
    spec = importlib.util.spec_from_file_location(f"bench_handler_{name}", code / "inference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _one_call(functions: Any, model: Any, body: bytes, content_type: str) -> str:
    data: bytes | str = body.decode("utf-8") if content_type in UTF8_TYPES else body
    result = functions.output_fn(
        functions.predict_fn(functions.input_fn(data, content_type), model), "application/json"
    )
    if isinstance(result, tuple):
        result = result[0]
    return result.decode("utf-8") if isinstance(result, bytes | bytearray) else str(result)


def measure(
    name: str, spec: dict[str, Any], seconds: float, chain: str, min_calls: int = 20
) -> dict[str, Any]:
    import torch

    model_dir = Path(spec["model_dir"])
    functions = _default_chain(chain) if name == "tiny" else _user_module(model_dir, name)
    started = time.perf_counter()
    model = functions.model_fn(str(model_dir))
    load_s = time.perf_counter() - started
    body = Path(spec["body"]).read_bytes()
    content_type = spec["content_type"]
    call: Callable[[], str] = lambda: _one_call(functions, model, body, content_type)  # noqa: E731
    response = call()
    for _ in range(3):
        call()
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < min_calls:
        begin = time.perf_counter()
        call()
        samples.append((time.perf_counter() - begin) * 1000.0)
    return {
        "workload": name,
        "chain": chain if name == "tiny" else "user",
        "calls": len(samples),
        "p50_ms": round(statistics.median(samples), 4),
        "p99_ms": round(percentile(samples, 99), 4),
        "mean_ms": round(statistics.fmean(samples), 4),
        "torch_threads": torch.get_num_threads(),
        "model_load_s": round(load_s, 3),
        "response": response,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time the handler chain in-process.")
    parser.add_argument("work", type=Path, help="the directory holding manifest.json")
    parser.add_argument("--workloads", default="tiny,resnet_bytes,resnet_url")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--chain", choices=("moorage", "toolkit"), default="moorage")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # torchvision's pretrained= and torch.jit deprecations
    manifest = json.loads((args.work / "manifest.json").read_text())
    for name in args.workloads.split(","):
        print(json.dumps(measure(name, manifest["workloads"][name], args.seconds, args.chain)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
