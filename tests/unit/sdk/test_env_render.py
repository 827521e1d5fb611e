"""`moorage env`'s output: each shell reads back exactly the values, and each variable is botocore's."""

from __future__ import annotations

import io
import shlex
import shutil
import subprocess
from pathlib import Path

import boto3
import pytest
from dotenv import dotenv_values

from moorage.commands.env import render
from moorage.sdk.environment import SERVED_ON_API_PORT, ClientEnvironment, endpoint_variable

AWKWARD = '/tmp/a dir/it\'s "quoted" $HOME `x` \\ ; #'


def environment(value: str) -> ClientEnvironment:
    return ClientEnvironment(
        url="http://127.0.0.1:8080",
        url_source="--url",
        variables={"MOORAGE_URL": "http://127.0.0.1:8080", "SAGEMAKER_USER_CONFIG_OVERRIDE": value},
        defaults_file=Path(value),
    )


def test_sh_output_evaluates_to_the_values_in_bash() -> None:
    script = render(environment(AWKWARD), "sh") + 'printf "%s" "$SAGEMAKER_USER_CONFIG_OVERRIDE"'
    shown = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    assert shown == AWKWARD


def test_sh_output_unsets_a_session_token_left_by_another_login() -> None:
    script = render(environment("x"), "sh") + 'printf "%s" "${AWS_SESSION_TOKEN-unset}"'
    env = {"PATH": "/usr/bin:/bin", "AWS_SESSION_TOKEN": "from-aws-sso"}
    shown = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, env=env).stdout
    assert shown == "unset"


def test_dotenv_output_parses_to_the_values() -> None:
    rendered = render(environment(AWKWARD), "dotenv")
    assert dotenv_values(stream=io.StringIO(rendered)) == {
        "MOORAGE_URL": "http://127.0.0.1:8080",
        "SAGEMAKER_USER_CONFIG_OVERRIDE": AWKWARD,
    }


def test_fish_output_quotes_for_fish() -> None:
    lines = render(environment("it's \\ here"), "fish").splitlines()
    assert "set -e AWS_SESSION_TOKEN" in lines
    assert "set -gx SAGEMAKER_USER_CONFIG_OVERRIDE 'it\\'s \\\\ here'" in lines
    if shutil.which("fish"):  # where fish is installed, it reads the value back
        script = render(environment(AWKWARD), "fish") + "printf '%s' $SAGEMAKER_USER_CONFIG_OVERRIDE"
        shown = subprocess.run(["fish", "-c", script], capture_output=True, text=True, check=True).stdout
        assert shown == AWKWARD


def test_the_secret_is_hidden_in_the_repr_only_for_a_real_key() -> None:
    from moorage.credentials import AccessKey

    variables = {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}
    real = ClientEnvironment("u", "s", variables, Path("f"), access_key=AccessKey("AKIAEXAMPLE", "s3cr3t"))
    assert "s3cr3t" not in repr(real) and "AWS_SECRET_ACCESS_KEY=…" in repr(real)
    dummy = ClientEnvironment("u", "s", {"AWS_SECRET_ACCESS_KEY": "moorage"}, Path("f"))
    assert "AWS_SECRET_ACCESS_KEY=moorage" in repr(dummy)


CLIENT_NAMES = {
    "SageMaker": "sagemaker",
    "SageMaker Runtime": "sagemaker-runtime",
    "IAM": "iam",
    "CloudWatch Logs": "logs",
    "Application Auto Scaling": "application-autoscaling",
    "CloudWatch": "cloudwatch",
    "S3": "s3",
}


def test_every_api_on_the_servers_port_has_its_variable() -> None:
    assert set(SERVED_ON_API_PORT) | {"S3"} == set(CLIENT_NAMES)


@pytest.mark.parametrize(("service_id", "client_name"), CLIENT_NAMES.items())
def test_each_variable_is_the_one_botocore_reads(
    service_id: str, client_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(endpoint_variable(service_id), "http://127.0.0.1:1234")
    session = boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    client = session.client(client_name)
    assert client.meta.service_model.service_id == service_id
    assert client.meta.endpoint_url == "http://127.0.0.1:1234"


def test_shell_quoting_matches_shlex() -> None:
    assert f"export MOORAGE_URL={shlex.quote('http://127.0.0.1:8080')}" in render(environment("x"), "sh")
