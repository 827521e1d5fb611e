"""The three workloads, built with moorage's own example builders, and how a response is checked.

- tiny: a TorchScript Linear(16 → 4) served by the default handlers, a 16-float JSON body;
- resnet_bytes: the seed's ResNet-50 with bench/handlers/inference_bytes.py, the JPEG as the body;
- resnet_url: the seed's ResNet-50 with the seed's own inference.py, a JSON body naming the JPEG on
  a local HTTP server (the download is inside every figure, the baseline's included).

`python -m bench.workloads DIR` builds the models in a child process (the harness itself never
imports torch) and writes DIR/manifest.json; a manifest whose inputs have not changed is reused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = ["NAMES", "Workload", "build", "load_manifest", "matches", "url_body"]

NAMES = ("tiny", "resnet_bytes", "resnet_url")
HERE = Path(__file__).resolve().parent
BYTES_HANDLER = HERE / "handlers" / "inference_bytes.py"


@dataclass(frozen=True)
class Workload:
    name: str
    model_dir: Path  # extracted: what the baseline loads
    tarball: Path  # model.tar.gz: what the servers are given
    body: Path
    content_type: str
    check: Literal["tiny", "resnet"]


def _inputs_digest() -> str:
    from moorage.examples import builders

    digest = hashlib.sha256()
    for path in (Path(builders.__file__), builders.SEED_HANDLER, BYTES_HANDLER, Path(__file__)):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build(work: Path) -> dict[str, Any]:
    """Build every artifact under `work` (or reuse them) and return the manifest."""
    from moorage.examples.builders import pack, seed_model_dir, test_image, tiny_model_dir

    stamp = _inputs_digest()
    manifest_path = work / "manifest.json"
    try:
        manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        if manifest.get("stamp") == stamp:
            return manifest
    except (OSError, ValueError):
        pass
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    image = test_image(work / "images" / "test.jpg")
    rng = random.Random(7)
    tiny_body = work / "tiny.json"
    tiny_body.write_text(json.dumps([[round(rng.uniform(-1.0, 1.0), 4) for _ in range(16)]]))
    tiny = tiny_model_dir(work / "tiny" / "model")
    seed = seed_model_dir(work / "resnet_url" / "model", images=[image])
    seed_bytes = seed_model_dir(work / "resnet_bytes" / "model", images=[image], handler=BYTES_HANDLER)
    manifest = {
        "stamp": stamp,
        "image": str(image),
        "image_bytes": image.stat().st_size,
        "weight_seed": int((seed / "seed.txt").read_text()),
        "workloads": {
            "tiny": {
                "model_dir": str(tiny),
                "tarball": str(pack(tiny, work / "tiny" / "model.tar.gz")),
                "body": str(tiny_body),
                "content_type": "application/json",
                "check": "tiny",
            },
            "resnet_bytes": {
                "model_dir": str(seed_bytes),
                "tarball": str(pack(seed_bytes, work / "resnet_bytes" / "model.tar.gz")),
                "body": str(image),
                "content_type": "application/x-image",
                "check": "resnet",
            },
            "resnet_url": {
                "model_dir": str(seed),
                "tarball": str(pack(seed, work / "resnet_url" / "model.tar.gz")),
                "body": str(work / "url.json"),  # written by the harness: it knows the image server
                "content_type": "application/json",
                "check": "resnet",
            },
        },
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest


def load_manifest(work: Path) -> dict[str, Workload]:
    manifest = json.loads((work / "manifest.json").read_text())
    return {
        name: Workload(
            name=name,
            model_dir=Path(spec["model_dir"]),
            tarball=Path(spec["tarball"]),
            body=Path(spec["body"]),
            content_type=spec["content_type"],
            check=spec["check"],
        )
        for name, spec in manifest["workloads"].items()
    }


def url_body(work: Path, image_url: str) -> None:
    """The resnet_url request body: the seed's `{"url": ...}`, pointing at this run's image server."""
    (work / "url.json").write_text(json.dumps({"url": image_url}))


def matches(check: str, got: bytes, expected: str) -> bool:
    """Whether a served response equals the in-process one (floats to 1e-4, scores to 1e-3 points)."""
    try:
        served, wanted = json.loads(got), json.loads(expected)
        if check == "tiny":
            return len(served[0]) == len(wanted[0]) and all(
                abs(a - b) < 1e-4 for a, b in zip(served[0], wanted[0], strict=True)
            )
        return [s["prediction"] for s in served] == [w["prediction"] for w in wanted] and all(
            abs(float(s["score"].rstrip("%")) - float(w["score"].rstrip("%"))) < 1e-3
            for s, w in zip(served, wanted, strict=True)
        )
    except (ValueError, KeyError, TypeError, IndexError):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the benchmark's models, bodies and manifest.")
    parser.add_argument("work", type=Path)
    args = parser.parse_args(argv)
    manifest = build(args.work.resolve())
    print(json.dumps({"stamp": manifest["stamp"], "weight_seed": manifest["weight_seed"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
