"""IAM's GetRole, so the SageMaker SDK can turn a role *name* into an ARN without AWS (spec §6.3).

`PyTorchModel(role="CustomSageMakerRoleName")` makes SDK 2.x call `iam.Role(name).arn`, an IAM
GetRole request that honours AWS_ENDPOINT_URL_IAM. moorage keeps no roles and checks none (spec §6.3:
an emulator may accept any pattern-valid role), so every valid role name exists here, with the ARN
`arn:aws:iam::<account>:role/<name>`.

IAM speaks the AWS query protocol: `POST /` with a form-encoded body (`Action=GetRole&Version=...
&RoleName=...`) and an XML answer wrapped in `<GetRoleResponse><GetRoleResult>`. Any other action is
refused with an error a user can read; errors are rendered by `api/errors.py`.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote
from xml.sax.saxutils import escape

from moorage.api.errors import new_request_id, query_error
from moorage.errors import MoorageError, UnknownOperationException, ValidationError
from moorage.httpd import Request, Response

__all__ = ["IAM_NAMESPACE", "IamApi", "is_query_request"]

IAM_NAMESPACE = "https://iam.amazonaws.com/doc/2010-05-08/"
MAX_BODY_BYTES = 64 * 1024
_FORM = "application/x-www-form-urlencoded"
# botocore's IAM model: roleNameType, 1 to 64 characters.
_ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)
_TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sagemaker.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    },
    separators=(",", ":"),
)


def is_query_request(request: Request) -> bool:
    """A POST / in the AWS query protocol (form body, no X-Amz-Target), as botocore sends IAM calls."""
    if request.method != "POST" or request.path != "/" or "x-amz-target" in request.headers:
        return False
    media_type = (request.headers.get("content-type") or "").split(";", 1)[0]
    return media_type.strip().lower() == _FORM


class IamApi:
    def __init__(self, account_id: str, created: datetime | None = None) -> None:
        self.account_id = account_id
        self.created = created or datetime.now(UTC)

    async def handle(self, request: Request) -> Response:
        request_id = new_request_id()
        try:
            form = dict(parse_qsl((await request.body(MAX_BODY_BYTES)).decode("utf-8", "replace")))
            action = form.get("Action", "")
            if action != "GetRole":
                raise UnknownOperationException(
                    f"moorage answers only the IAM action GetRole (role name to ARN), not {action!r}."
                )
            body = self._get_role(form.get("RoleName", ""), request_id)
        except MoorageError as error:
            return query_error(error, request_id, IAM_NAMESPACE)
        return Response(200, body, [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)])

    def _get_role(self, name: str, request_id: str) -> bytes:
        if not _ROLE_NAME.fullmatch(name):
            raise ValidationError(
                f"1 validation error detected: Value {name!r} at 'roleName' failed to satisfy constraint: "
                "Member must satisfy regular expression pattern: [\\w+=,.@-]+ and have length 1 to 64"
            )
        # A stable id per name, shaped like IAM's (AROA + 17 upper-case alphanumerics).
        role_id = "AROA" + hashlib.sha256(name.encode()).hexdigest()[:17].upper()
        arn = f"arn:aws:iam::{self.account_id}:role/{name}"
        created = self.created.strftime("%Y-%m-%dT%H:%M:%SZ")
        return (
            f'<GetRoleResponse xmlns="{IAM_NAMESPACE}"><GetRoleResult><Role>'
            f"<Path>/</Path><RoleName>{escape(name)}</RoleName><RoleId>{role_id}</RoleId>"
            f"<Arn>{escape(arn)}</Arn><CreateDate>{created}</CreateDate>"
            f"<AssumeRolePolicyDocument>{quote(_TRUST_POLICY)}</AssumeRolePolicyDocument>"
            "<MaxSessionDuration>3600</MaxSessionDuration>"
            f"</Role></GetRoleResult><ResponseMetadata><RequestId>{request_id}</RequestId>"
            "</ResponseMetadata></GetRoleResponse>"
        ).encode()
