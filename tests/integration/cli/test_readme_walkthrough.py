"""README.md's aws CLI walkthrough, run line by line as the page prints it, with the installed aws CLI.

The commands are read from README.md itself (the fenced block under "Use it" that drives `aws
sagemaker`), so the page and this test cannot drift apart. Only the addresses change: the README's
fixed ports (8080, 9000, and 8000 for the image) become the ports this test's server and image server
bound. `aws sagemaker wait` polls every 30 s by default; AWS_DATA_PATH gives the unchanged CLI a copy of
botocore's own waiter definitions with a 1 s delay, so the wait is the CLI's and the test stays short.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import botocore.loaders
import pytest

from support.cli import isolated_environment
from support.seed import seed_answer
from support.servers import RunningServer

pytestmark = pytest.mark.slow

README = Path(__file__).parents[3] / "README.md"
AWS_BIN = Path(sys.executable).parent


def readme_section(title: str) -> str:
    """The text of README.md's `## {title}` section, up to the next `## ` heading."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def walkthrough_commands() -> list[str]:
    """Each command of the `sh` block that runs `aws sagemaker`, continuation lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", readme_section("Use it"), flags=re.DOTALL)
    (block,) = [b for b in blocks if "aws sagemaker " in b]
    joined = block.replace("\\\n", " ")
    return [" ".join(line.split()) for line in joined.splitlines() if line.strip()]


def test_the_readme_block_is_what_this_test_expects() -> None:
    """The parse itself: if the README's block changes shape, this says how, before any server starts."""
    commands = walkthrough_commands()
    assert commands[0].startswith("export AWS_ENDPOINT_URL_SAGEMAKER=")
    assert [c.split()[:3] for c in commands if c.startswith("aws ")] == [
        ["aws", "s3", "mb"],
        ["aws", "s3", "cp"],
        ["aws", "sagemaker", "create-model"],
        ["aws", "sagemaker", "create-endpoint-config"],
        ["aws", "sagemaker", "create-endpoint"],
        ["aws", "sagemaker", "wait"],
        ["aws", "sagemaker-runtime", "invoke-endpoint"],
    ]
    assert "--cli-binary-format" not in " ".join(commands)  # aws CLI 1.x stops on that option


def fast_waiters(root: Path) -> Path:
    """botocore's SageMaker waiters, unchanged but for a 1 s delay, where AWS_DATA_PATH finds them."""
    loader = botocore.loaders.Loader()
    version = loader.determine_latest_version("sagemaker", "waiters-2")
    waiters = loader.load_service_model("sagemaker", "waiters-2", version)
    for waiter in waiters["waiters"].values():
        waiter["delay"], waiter["maxAttempts"] = 1, 240
    target = root / "sagemaker" / version / "waiters-2.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(waiters))
    return root


def test_the_readme_walkthrough_works_line_by_line(
    server: RunningServer, artifacts: Any, image_server: str, tmp_path: Path
) -> None:
    assert server.s3_url, "moorage serve starts its S3 store by default"
    addresses = {
        "http://127.0.0.1:8080": server.url,
        "http://127.0.0.1:9000": server.s3_url,
        "http://127.0.0.1:8000": image_server,
    }
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(artifacts.seed_tar, work / "model.tar.gz")  # the README's ./model.tar.gz
    env = isolated_environment(
        tmp_path,
        {
            "PATH": f"{AWS_BIN}{os.pathsep}{os.environ['PATH']}",
            "AWS_DATA_PATH": str(fast_waiters(tmp_path / "botocore-data")),
        },
    )
    for command in walkthrough_commands():
        for readme_address, real in addresses.items():
            command = command.replace(readme_address, real)
        if command.startswith("export "):
            env.update(word.split("=", 1) for word in shlex.split(command)[1:])  # type: ignore[misc]
            continue
        done = subprocess.run(
            ["bash", "-c", command], cwd=work, env=env, capture_output=True, timeout=300, check=False
        )
        assert done.returncode == 0, f"{command}\n{done.stdout.decode()}\n{done.stderr.decode()}"

    request = (work / "request.json").read_text()
    answer = json.loads((work / "answer.json").read_text())
    assert answer == seed_answer(artifacts.seed_dir, request)
    assert [entry["prediction"] for entry in answer] and len(answer) == 3
    sm = server.client("sagemaker")
    (variant,) = sm.describe_endpoint(EndpointName="seed")["ProductionVariants"]
    assert (variant["VariantName"], variant["CurrentInstanceCount"]) == ("AllTraffic", 2)
    sm.delete_endpoint(EndpointName="seed")
