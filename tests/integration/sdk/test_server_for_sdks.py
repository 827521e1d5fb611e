"""What the SDKs ask of the server beyond the hosting API: `GET /_moorage/info` and IAM GetRole.

GetRole is how SageMaker's SDK turns `role="CustomSageMakerRoleName"` into an ARN (spec §6.3); it is
checked here with boto3's IAM client and resource, exactly the calls the SDK makes.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from support.servers import REGION, http_get, post

pytestmark = pytest.mark.slow


def iam_session() -> boto3.Session:
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


def test_info_tells_clients_where_the_store_is(embedded: Any) -> None:
    status, body = http_get(embedded.server.url + "/_moorage/info")
    assert status == 200
    info = json.loads(body)
    sandbox = info.pop("sandbox")  # what the kernel offered workers: tests/integration/security/
    assert info == {
        "version": "0.1.0",
        "s3_url": embedded.server.s3_url,
        "region": "us-east-1",
        "account_id": "000000000000",
    }
    assert isinstance(sandbox, dict) and "exposed" in sandbox


def test_get_role_gives_the_arn_the_sdk_records(embedded: Any) -> None:
    iam = iam_session().client("iam", endpoint_url=embedded.server.url)
    role = iam.get_role(RoleName="CustomSageMakerRoleName")["Role"]
    assert role["Arn"] == "arn:aws:iam::000000000000:role/CustomSageMakerRoleName"
    assert (role["RoleName"], role["Path"]) == ("CustomSageMakerRoleName", "/")
    assert role["RoleId"].startswith("AROA") and isinstance(role["CreateDate"], datetime)
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"
    }
    # The SageMaker SDK's own call: boto_session.resource("iam").Role(name).arn
    resource = iam_session().resource("iam", endpoint_url=embedded.server.url)
    assert resource.Role("other.role@team").arn == "arn:aws:iam::000000000000:role/other.role@team"


def test_get_role_refuses_an_invalid_name(embedded: Any) -> None:
    iam = iam_session().client("iam", endpoint_url=embedded.server.url)
    with pytest.raises(ClientError) as refused:
        iam.get_role(RoleName="no spaces/allowed")
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    assert "'roleName' failed to satisfy constraint" in refused.value.response["Error"]["Message"]
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_other_iam_actions_are_refused_in_iams_own_shape(embedded: Any) -> None:
    iam = iam_session().client("iam", endpoint_url=embedded.server.url)
    with pytest.raises(ClientError) as refused:
        iam.list_roles()
    assert refused.value.response["Error"]["Code"] == "UnknownOperationException"
    assert "only the IAM action GetRole" in refused.value.response["Error"]["Message"]


def test_a_form_post_without_action_is_not_mistaken_for_sagemaker(embedded: Any) -> None:
    status, headers, body, _ = post(
        embedded.server.url + "/", b"RoleName=x", {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert status == 400
    assert headers["Content-Type"] == "text/xml"
    assert b"<Code>UnknownOperationException</Code>" in body
