"""`make demo`: the seed's journey on moorage, end to end, on this machine.

1. Start `moorage serve` (state in ./demo-data/server; ports 8080 and 9000 when free).
2. Build the seed post's example: its ResNet-50 head on seeded random weights and its inference.py.
3. Upload model.tar.gz to moorage's S3 store, as the post does with `aws s3 cp`.
4. Deploy it with moorage's SDK on 2 instances, and invoke it with {"url": ...} for an image served here.
5. Train a small model on scikit-learn's digits, deploy it, and measure its accuracy through the endpoint.
   Then train a character-level GRU on the Zen of Python and stream its text, token by token, through
   boto3's invoke_endpoint_with_response_stream (a handler that yields).
6. Stop the server cleanly (its state stays; `moorage serve --data-dir demo-data/server` brings it back),
   or keep it running with `--keep-running`.

`--dir` puts everything somewhere else than ./demo-data and `--any-port` takes free ports instead of
8080 and 9000 (tests/integration/test_demo.py runs the demo that way and checks what it prints).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "demo-data"  # --dir changes it
REGION = "us-east-1"
STREAM_PROMPT = "Beautiful is"  # the streaming example's request (tests/integration/test_demo.py reads it)
STREAM_TOKENS = 120


def say(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def port_or_any(preferred: int) -> int:
    if preferred == 0:
        return 0
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return 0


@contextmanager
def moorage_server(data_dir: Path, keep_running: bool, any_port: bool) -> Iterator[dict[str, str]]:
    port, s3_port = (0, 0) if any_port else (port_or_any(8080), port_or_any(9000))
    log = (DEMO / "server.log").open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "moorage",
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--s3-port",
            str(s3_port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    started = time.monotonic()
    try:
        info = wait_for_server(process, data_dir / "server.json")
        say(
            f"moorage is up in {time.monotonic() - started:.1f} s: SageMaker API {info['url']}, "
            f"S3 store {info['s3_url']} (log: {DEMO / 'server.log'})"
        )
        yield info
        if keep_running:
            say("the server keeps running; press Ctrl+C to stop it")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        log.close()


def wait_for_server(process: subprocess.Popen[bytes], info_path: Path) -> dict[str, str]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"moorage serve exited early; see {DEMO / 'server.log'}")
        try:
            info: dict[str, str] = json.loads(info_path.read_text())
            if str(info.get("pid")) == str(process.pid):
                with urllib.request.urlopen(info["url"] + "/ping", timeout=2):
                    return info
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    sys.exit("moorage serve did not come up within 60 s")


@contextmanager
def image_server(directory: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def point_clients_at(info: dict[str, str]) -> None:
    """What a user exports to aim unchanged AWS clients at moorage (README: "Use it")."""
    os.environ.update(
        {
            "AWS_ENDPOINT_URL_SAGEMAKER": info["url"],
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": info["url"],
            "AWS_ENDPOINT_URL_S3": info["s3_url"],
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "demo",
            "AWS_SECRET_ACCESS_KEY": "demo",
        }
    )


def upload(tarball: Path, bucket: str, key: str) -> str:
    import boto3

    s3 = boto3.client("s3")
    if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(tarball), bucket, key)
    return f"s3://{bucket}/{key}"


def seed_example(work: Path, images: str) -> None:
    from moorage import JSONDeserializer, JSONSerializer, PyTorchModel
    from moorage.examples.builders import SEED_HANDLER, pack, seed_model_dir, test_image

    say("building the seed's example: ResNet-50 with the post's head, random weights (no downloads here)")
    image = test_image(work / "images" / "predict.png")
    model_dir = seed_model_dir(work / "seed", images=[image])
    tarball = pack(model_dir, work / "model.tar.gz")
    say(f"aws s3 cp ./model.tar.gz s3://pytorch-sagemaker-example  ({tarball.stat().st_size / 1e6:.0f} MB)")
    model_data = upload(tarball, "pytorch-sagemaker-example", "model.tar.gz")

    started = time.monotonic()
    pytorch_model = PyTorchModel(
        model_data=model_data,
        role="arn:aws:iam::000000000000:role/demo",
        entry_point=str(SEED_HANDLER),
        framework_version="1.3.1",
    )
    predictor = pytorch_model.deploy(
        instance_type="ml.t2.medium",
        initial_instance_count=2,
        endpoint_name="seed-resnet50",
        serializer=JSONSerializer(),
        deserializer=JSONDeserializer(),
        progress=lambda step: say(f"  {step}"),
    )
    say(f"endpoint seed-resnet50 InService on 2 instances after {time.monotonic() - started:.1f} s")
    request = {"url": f"{images}/predict.png"}
    answer = predictor.predict(request)
    say(f"invoke {json.dumps(request)} → top 3:")
    for entry in answer:
        print(f"      {entry['prediction']:<10} {entry['score']}")


def digits_example(work: Path) -> None:
    from moorage import JSONDeserializer, JSONSerializer, PyTorchModel
    from moorage.examples.builders import pack
    from moorage.examples.digits import load_digits_split, train_digits_model

    data = load_digits_split()
    say(f"training a small model on scikit-learn's digits ({len(data.train_y)} images of 8x8 pixels)")
    started = time.monotonic()
    train_accuracy = train_digits_model(work / "digits", data)
    say(f"  trained in {time.monotonic() - started:.1f} s (training accuracy {train_accuracy:.1%})")
    model_data = upload(pack(work / "digits", work / "digits.tar.gz"), "moorage-demo", "digits/model.tar.gz")
    predictor = PyTorchModel(
        model_data=model_data,
        role="arn:aws:iam::000000000000:role/demo",
        framework_version="2.1",
        py_version="py310",
    ).deploy(
        instance_type="ml.m5.large",
        initial_instance_count=1,
        endpoint_name="digits",
        serializer=JSONSerializer(),
        deserializer=JSONDeserializer(),
    )
    correct = 0
    for start in range(0, len(data.test_y), 60):
        rows = data.test_x[start : start + 60]
        scores = np.asarray(predictor.predict(rows.tolist()))  # the default handlers: JSON in, JSON out
        correct += int((scores.argmax(axis=1) == data.test_y[start : start + 60]).sum())
    say("endpoint digits (TorchScript model.pt, SageMaker's default handlers, no inference.py):")
    print(
        f"      accuracy on {len(data.test_y)} held-out images, measured through the endpoint: "
        f"{correct / len(data.test_y):.1%}"
    )


def streaming_example(work: Path) -> None:
    """A handler that yields: each character leaves the worker as it is sampled (docs/streaming.md)."""
    import boto3

    from moorage import PyTorchModel
    from moorage.examples.builders import pack
    from moorage.examples.textgen import train_text_model

    say("training a character-level GRU on the Zen of Python (read from the stdlib's `this` module)")
    started = time.monotonic()
    loss = train_text_model(work / "textgen")
    say(f"  trained in {time.monotonic() - started:.1f} s (final loss {loss:.2f} nats per character)")
    model_data = upload(
        pack(work / "textgen", work / "textgen.tar.gz"), "moorage-demo", "textgen/model.tar.gz"
    )
    PyTorchModel(
        model_data=model_data,
        role="arn:aws:iam::000000000000:role/demo",
        framework_version="2.1",
        py_version="py310",
    ).deploy(instance_type="ml.m5.large", initial_instance_count=1, endpoint_name="textgen")
    request = {"prompt": STREAM_PROMPT, "max_new_tokens": STREAM_TOKENS, "temperature": 0.8, "seed": 0}
    say(f"endpoint textgen streams: invoke_endpoint_with_response_stream {json.dumps(request)} →")
    runtime = boto3.client("sagemaker-runtime")
    sent = time.perf_counter()
    response = runtime.invoke_endpoint_with_response_stream(
        EndpointName="textgen", Body=json.dumps(request), ContentType="application/json"
    )
    first_s = 0.0
    parts = 0
    print(f"      {STREAM_PROMPT}", end="", flush=True)
    for event in response["Body"]:
        if not parts:
            first_s = time.perf_counter() - sent
        parts += 1
        token = event["PayloadPart"]["Bytes"].decode()
        print(token.replace("\n", "\n      "), end="", flush=True)  # each token as it arrives
    whole_s = time.perf_counter() - sent
    print()
    say(
        f"  {parts} tokens in {parts} PayloadParts: the first after {first_s * 1000:.0f} ms, "
        f"the whole answer after {whole_s * 1000:.0f} ms"
    )


def sample_digit() -> list[float]:
    """One held-out image, rounded, for the command line the demo suggests."""
    from moorage.examples.digits import load_digits_split

    return [round(float(v), 1) for v in load_digits_split().test_x[0]]


def set_demo_dir(path: Path) -> None:
    global DEMO
    DEMO = path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep-running", action="store_true", help="leave the server running at the end")
    parser.add_argument("--dir", type=Path, default=DEMO, help="where state, work files and the log go")
    parser.add_argument("--any-port", action="store_true", help="free ports instead of 8080 and 9000")
    args = parser.parse_args()
    set_demo_dir(args.dir.resolve())
    started = time.monotonic()
    data_dir, work = DEMO / "server", DEMO / "work"
    if data_dir.exists():
        say(f"starting from a clean state: removing the previous demo's {data_dir}")
        shutil.rmtree(data_dir)
    work.mkdir(parents=True, exist_ok=True)
    with (
        moorage_server(data_dir, args.keep_running, args.any_port) as info,
        image_server(work / "images") as images,
    ):
        point_clients_at(info)
        seed_example(work, images)
        digits_example(work)
        streaming_example(work)
        say(f"done in {time.monotonic() - started:.0f} s")
        ports = "" if info["url"].endswith(":8080") else f"--port {info['url'].rsplit(':', 1)[1]} "
        lines = [
            "",
            "Next:",
            "  # the server's state stays: started again, both endpoints come back by themselves",
            f"  .venv/bin/moorage serve --data-dir {data_dir} {ports}  # in another terminal",
            f'  eval "$(.venv/bin/moorage env --data-dir {data_dir})"  # points the aws CLI and SDKs at it',
            "  .venv/bin/aws sagemaker list-endpoints",
            "  .venv/bin/moorage logs seed-resnet50",
            f"  echo '{json.dumps([sample_digit()])}' > digit.json",
            "  .venv/bin/aws sagemaker-runtime invoke-endpoint --endpoint-name digits \\",
            "      --content-type application/json --body fileb://digit.json /dev/stdout",
            '  .venv/bin/moorage invoke textgen --stream --json \'{"prompt": "Errors should"}\'',
            "",
        ]
        print("\n".join(lines))
        if not args.keep_running:
            say(f"stopping the server cleanly (its state stays in {data_dir})")


if __name__ == "__main__":
    main()
