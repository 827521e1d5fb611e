"""`moorage env` (issue 19): one command sets a shell up, and unchanged clients reach every API.

Each test runs a fresh `bash` with nothing of the developer's AWS set-up, evaluates `moorage env`, and
drives the aws CLI (or the SageMaker SDK) against the real server; what they did is then checked
through the server itself.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dotenv import dotenv_values

from moorage.sdk.notebook_role import NOTEBOOK_METADATA_FILE
from support.cli import Cli, isolated_environment
from support.notebook_role import metadata_file_slot
from support.servers import RunningServer, start_server, wait_until_gone

pytestmark = pytest.mark.slow

BIN = str(Path(sys.executable).parent)  # moorage and aws, as a user of this virtualenv has them
# get_execution_role() in a process that records any connection or lookup beyond loopback.
WHO_AM_I = """
import sys
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
outside = []
def audit(event, args):
    if event == "socket.connect" and isinstance(args[1], tuple) and args[1][0] not in LOOPBACK:
        outside.append(repr(args[1]))
    elif event == "socket.getaddrinfo" and args[0] not in LOOPBACK and args[0] is not None:
        outside.append(repr(args[0]))
sys.addaudithook(audit)
from sagemaker import get_execution_role
print(get_execution_role())
print("outside:", outside)
"""


def shell(script: str, home: Path) -> subprocess.CompletedProcess[str]:
    """`bash -c script` as a fresh login would run it: no AWS variables, this virtualenv on the PATH."""
    env = isolated_environment(home, {"PATH": f"{BIN}:{os.environ.get('PATH', '')}"})
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        env.pop(name)  # base_environment's test keys: `moorage env` must provide them
    return subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, env=env, cwd=home, timeout=240, check=False
    )


def test_a_fresh_shell_evaluates_it_and_the_aws_cli_reaches_every_api(
    server: RunningServer, tmp_path: Path
) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    script = f"""
        set -e
        eval "$(moorage env --data-dir {server.data_dir})"
        aws s3 mb s3://env-round-trip >/dev/null
        aws sagemaker create-model --model-name env-round-trip \\
            --primary-container ModelDataUrl=file://{model_dir} >/dev/null
        aws sagemaker list-models --query 'Models[].ModelName' --output json
        aws iam get-role --role-name EnvRole --query Role.Arn --output text
        aws logs describe-log-groups --output json
        aws application-autoscaling describe-scalable-targets --service-namespace sagemaker --output json
        printf '%s\\n' "$AWS_DEFAULT_REGION" "$SAGEMAKER_USER_CONFIG_OVERRIDE"
    """
    run = shell(script, tmp_path)
    assert run.returncode == 0, run.stderr
    models, rest = run.stdout.split("]", 1)
    assert json.loads(models + "]") == ["env-round-trip"]
    lines = rest.strip().splitlines()
    assert lines[0] == "arn:aws:iam::000000000000:role/EnvRole"
    assert lines[-2:] == ["us-east-1", str(server.data_dir / "sagemaker-config.yaml")]
    assert json.loads("".join(lines[1:4])) == {"logGroups": []}
    assert json.loads("".join(lines[4:-2])) == {"ScalableTargets": []}
    # What the CLI did, seen through the server with boto3:
    assert "env-round-trip" in [b["Name"] for b in server.client("s3").list_buckets()["Buckets"]]
    described = server.client("sagemaker").describe_model(ModelName="env-round-trip")
    assert described["PrimaryContainer"]["ModelDataUrl"] == f"file://{model_dir}"
    # The SDK's defaults file names the bucket the SDK would derive from STS in this account.
    defaults = (server.data_dir / "sagemaker-config.yaml").read_text()
    assert "DefaultS3Bucket: sagemaker-us-east-1-000000000000" in defaults
    assert f"moorage env: {server.url} (from {server.data_dir / 'server.json'})" in run.stderr


def test_the_dotenv_format_gives_a_process_the_same_environment(
    server: RunningServer, tmp_path: Path
) -> None:
    run = shell(f"moorage env --format dotenv --url {server.url}", tmp_path)
    assert run.returncode == 0, run.stderr
    values = {name: value or "" for name, value in dotenv_values(stream=io.StringIO(run.stdout)).items()}
    assert values["AWS_ENDPOINT_URL_SAGEMAKER"] == server.url
    assert values["AWS_ENDPOINT_URL_S3"] == server.s3_url
    env = {**isolated_environment(tmp_path), **values}
    listed = subprocess.run(
        [f"{BIN}/aws", "sagemaker", "list-endpoints", "--output", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {"Endpoints": []}


@pytest.fixture(scope="module")
def sigv4_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, str]]:
    """A server with --auth sigv4 and the one key it was started with."""
    data_dir = tmp_path_factory.mktemp("env-sigv4") / "data"
    cli = Cli(data_dir.parent, isolated_environment(data_dir.parent))
    created = cli.run("credentials", "create", "--data-dir", str(data_dir), "--output", "json")
    assert created.code == 0, created
    first_key = json.loads(created.stdout)["AccessKey"]["AccessKeyId"]
    running = start_server(data_dir, args=["--auth", "sigv4"])
    try:
        yield running, first_key
    finally:
        running.stop()
    assert not wait_until_gone(running.tag), running.log()[-3000:]


def test_with_sigv4_it_creates_a_key_or_uses_the_one_given(
    sigv4_server: tuple[RunningServer, str], tmp_path: Path
) -> None:
    server, first_key = sigv4_server
    listing = "aws sagemaker list-endpoints --output json"
    refused = shell(f'eval "$(moorage env --data-dir {server.data_dir})" && {listing}', tmp_path)
    assert refused.returncode != 0  # the dummy keys of a default set-up do not get in
    assert "moorage" not in refused.stdout

    created = shell(f'eval "$(moorage env --data-dir {server.data_dir} --auth sigv4)" && {listing}', tmp_path)
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout) == {"Endpoints": []}
    new_key = created.stderr.split("created access key ", 1)[1].split()[0]
    keys = Cli(tmp_path, isolated_environment(tmp_path)).run(
        "credentials", "list", "--data-dir", str(server.data_dir), "--output", "json"
    )
    assert sorted(k["AccessKeyId"] for k in json.loads(keys.stdout)["AccessKeyMetadata"]) == sorted(
        [first_key, new_key]
    )

    given = shell(
        f"moorage env --data-dir {server.data_dir} --auth sigv4 --access-key-id {first_key}", tmp_path
    )
    assert given.returncode == 0, given.stderr
    assert f"export AWS_ACCESS_KEY_ID={first_key}" in given.stdout.splitlines()
    assert "created access key" not in given.stderr
    used = shell(given.stdout + listing, tmp_path)
    assert used.returncode == 0, used.stderr


@pytest.fixture
def metadata_file() -> Iterator[Path]:
    with metadata_file_slot() as path:
        yield path


def test_get_execution_role_works_offline_through_the_metadata_file(
    server: RunningServer, metadata_file: Path, tmp_path: Path
) -> None:
    assert metadata_file == NOTEBOOK_METADATA_FILE
    (tmp_path / "who.py").write_text(WHO_AM_I)
    run = shell(
        f'eval "$(moorage env --data-dir {server.data_dir} --execution-role NotebookRole)" && python who.py',
        tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-2:] == ["arn:aws:iam::000000000000:role/NotebookRole", "outside: []"]
    assert f"Wrote {metadata_file}" in run.stderr
    assert f"Undo with: rm {metadata_file}" in run.stderr

    again = shell(f"moorage env --data-dir {server.data_dir} --execution-role NotebookRole", tmp_path)
    assert again.returncode == 0 and "already names" in again.stderr
    other = shell(f"moorage env --data-dir {server.data_dir} --execution-role OtherRole", tmp_path)
    assert other.returncode == 1
    assert "does not overwrite it" in other.stderr and other.stdout == ""
    assert json.loads(metadata_file.read_text())["ExecutionRoleArn"].endswith(":role/NotebookRole")


def test_without_a_server_it_says_what_to_do(tmp_path: Path) -> None:
    empty = tmp_path / "no-server"
    empty.mkdir()
    run = shell(f"moorage env --data-dir {empty}", tmp_path)
    assert run.returncode == 2 and run.stdout == ""
    assert f"No moorage server runs on the data dir {empty}" in run.stderr
    assert f"moorage serve --data-dir {empty}" in run.stderr
    closed = shell("moorage env --url http://127.0.0.1:9", tmp_path)
    assert closed.returncode == 1 and closed.stdout == ""
    assert "Could not reach the moorage server at http://127.0.0.1:9 (from --url)" in closed.stderr
