"""Who may call `moorage serve --auth sigv4`: SigV4 verification and per-key permissions, on both ports.

Unchanged boto3, aws CLI and SageMaker SDK clients sign every request with an access key from
`moorage credentials create`; the server recomputes each signature with the secret it holds
(`moorage.credentials`) and compares in constant time (spec §3). Each port answers in its own
vocabulary: the SageMaker port with AWS's JSON error codes (403 MissingAuthenticationToken,
UnrecognizedClientException, InvalidSignatureException — "Signature expired" beyond ±5 min — and
IncompleteSignatureException, AccessDeniedException), the S3 store with S3's (AccessDenied,
InvalidAccessKeyId, SignatureDoesNotMatch, RequestTimeTooSkewed, AuthorizationHeaderMalformed...),
which the S3 app renders from the AuthError's code.

What a signature covers:
- SageMaker APIs: the hash of the body as received, read under the route's own cap (the body is
  ≤ 1 MiB on the control plane, ≤ 6 MiB for InvokeEndpoint), so a forged request never costs more;
- S3: the declared x-amz-content-sha256, which the store then checks against the bytes it receives;
  UNSIGNED-PAYLOAD as AWS allows it; STREAMING-AWS4-HMAC-SHA256-PAYLOAD bodies have each chunk
  signature checked as they stream (`api.signed_chunks`); presigned URLs too, SigV4 and the SigV2
  form that `aws s3 presign` still makes for a custom endpoint (`api.sigv2`).
Headers that change a request's meaning (x-amz-*, x-amzn-*, and Content-Type on the SageMaker port)
must be signed, so none can be added to a captured request.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from moorage.api import sigv2, sigv4
from moorage.api.control import MAX_BODY_BYTES as CONTROL_BODY_BYTES
from moorage.api.runtime import parse_invocation_path
from moorage.api.signed_chunks import STREAMING_SIGNED, CheckedBodyReader, ChunkChecker
from moorage.api.sigv4 import Claim, Problem, SignatureError
from moorage.credentials import AccessKey, Keyring
from moorage.errors import (
    AccessDeniedException,
    AuthError,
    InvalidSignatureException,
    MissingAuthenticationToken,
    UnrecognizedClientException,
)
from moorage.httpd import Request
from moorage.settings import MAX_PAYLOAD_BYTES

__all__ = [
    "JSON_CLOCK_WINDOW_S",
    "S3_CLOCK_WINDOW_S",
    "IncompleteSignatureException",
    "S3AccessDenied",
    "S3Auth",
    "S3AuthorizationHeaderMalformed",
    "S3AuthorizationQueryParametersError",
    "S3InvalidAccessKeyId",
    "S3InvalidRequest",
    "S3RequestTimeTooSkewed",
    "S3SignatureDoesNotMatch",
    "SageMakerAuth",
]

JSON_CLOCK_WINDOW_S = 5 * 60  # AWS's window for its JSON services (spec §3.2)
S3_CLOCK_WINDOW_S = 15 * 60  # S3 allows 15 minutes
_OTHER_BODY_BYTES = 64 * 1024  # routes that take no body (GET /metrics, unknown paths)
# botocore leaves this one out of the signature; load balancers add it.
_UNSIGNABLE = frozenset({"x-amzn-trace-id"})


class IncompleteSignatureException(AuthError):
    """The Authorization header (or X-Amz-Date) does not parse as SigV4."""

    code = "IncompleteSignatureException"


class S3AccessDenied(AuthError):
    code = "AccessDenied"


class S3InvalidAccessKeyId(AuthError):
    code = "InvalidAccessKeyId"


class S3SignatureDoesNotMatch(AuthError):
    code = "SignatureDoesNotMatch"


class S3RequestTimeTooSkewed(AuthError):
    code = "RequestTimeTooSkewed"


class S3AuthorizationHeaderMalformed(AuthError):
    code = "AuthorizationHeaderMalformed"
    status = 400


class S3AuthorizationQueryParametersError(AuthError):
    code = "AuthorizationQueryParametersError"
    status = 400


class S3InvalidRequest(AuthError):
    code = "InvalidRequest"
    status = 400


_JSON_ERRORS: dict[Problem, type[AuthError]] = {
    Problem.MISSING: MissingAuthenticationToken,
    Problem.MALFORMED: IncompleteSignatureException,
    Problem.SCOPE: InvalidSignatureException,
    Problem.UNKNOWN_KEY: UnrecognizedClientException,
    Problem.SKEWED: InvalidSignatureException,
    Problem.EXPIRED: InvalidSignatureException,
    Problem.UNSIGNED_HEADER: InvalidSignatureException,
    Problem.PAYLOAD: InvalidSignatureException,
    Problem.MISMATCH: InvalidSignatureException,
}


def _json_error(exc: SignatureError) -> AuthError:
    return _JSON_ERRORS[exc.problem](exc.message)


def _s3_error(exc: SignatureError, *, presigned: bool = False) -> AuthError:
    """S3's code and wording for each problem (its messages are fixed strings, quoted from S3)."""
    problem = exc.problem
    if problem is Problem.MISSING:
        return S3AccessDenied("Access Denied")
    if problem is Problem.MALFORMED:
        if presigned:
            return S3AuthorizationQueryParametersError(exc.message)
        return S3AuthorizationHeaderMalformed(f"The authorization header is malformed; {exc.message}")
    if problem is Problem.SCOPE:
        return S3AuthorizationHeaderMalformed(f"The authorization header is malformed; {exc.message}")
    if problem is Problem.UNKNOWN_KEY:
        return S3InvalidAccessKeyId("The AWS Access Key Id you provided does not exist in our records.")
    if problem is Problem.SKEWED:
        return S3RequestTimeTooSkewed(
            "The difference between the request time and the current time is too large."
        )
    if problem in (Problem.EXPIRED, Problem.UNSIGNED_HEADER):
        return S3AccessDenied(exc.message)
    if problem is Problem.PAYLOAD:
        return S3InvalidRequest(exc.message)
    return S3SignatureDoesNotMatch(
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method."
    )


def _only_header(request: Request, name: str) -> str | None:
    values = [value for key, value in request.headers.items() if key.lower() == name]
    if len(values) > 1:
        raise SignatureError(Problem.MALFORMED, f"The request carries more than one {name} header.")
    return values[0] if values else None


def _raw_path(request: Request) -> str:
    raw = request.raw_path
    return urlsplit(raw).path if "://" in raw else raw


def _lookup(keyring: Keyring, access_key_id: str, token: str | None) -> AccessKey:
    key = keyring.get(access_key_id)
    # moorage issues long-term keys only: a session token is one we never issued.
    if key is None or token is not None:
        raise SignatureError(Problem.UNKNOWN_KEY, "The security token included in the request is invalid.")
    return key


@dataclass(frozen=True)
class _Verified:
    key: AccessKey
    claim: Claim
    timestamp: str
    signing_key: bytes


def _verify(
    request: Request,
    key: AccessKey,
    claim: Claim,
    timestamp: str,
    payload_hash: str,
    *,
    s3: bool,
    exclude: frozenset[str] = frozenset(),
) -> _Verified:
    headers = list(request.headers.items())
    canonical = sigv4.canonical_request(
        request.method,
        sigv4.canonical_uri(_raw_path(request), s3=s3),
        sigv4.canonical_query(request.query_string, exclude=exclude),
        sigv4.canonical_headers(headers, claim.signed_headers),
        claim.signed_headers,
        payload_hash,
    )
    signing_key = sigv4.signing_key(key.secret_access_key, claim.date, claim.region, claim.service)
    expected = sigv4.sign(signing_key, sigv4.string_to_sign(timestamp, claim.scope, canonical))
    if not sigv4.signatures_match(expected, claim.signature):
        raise SignatureError(
            Problem.MISMATCH,
            "The request signature we calculated does not match the signature you provided. Check your "
            "AWS Secret Access Key and signing method. Consult the service documentation for details.",
        )
    return _Verified(key, claim, timestamp, signing_key)


def _check_signed(request: Request, claim: Claim, *, names: frozenset[str] = frozenset()) -> None:
    unsigned = sigv4.unsigned_headers(
        request.headers.items(),
        claim.signed_headers,
        prefixes=("x-amz-", "x-amzn-"),
        names=names,
        exempt=_UNSIGNABLE,
    )
    if unsigned:
        raise SignatureError(
            Problem.UNSIGNED_HEADER,
            f"There were headers present in the request which were not signed: {', '.join(unsigned)}",
        )


class SageMakerAuth:
    """The main port's `authenticate` hook: every route but /ping (see api.app)."""

    def __init__(
        self,
        keyring: Keyring,
        *,
        region: str,
        account_id: str,
        services: frozenset[str] = frozenset({"sagemaker"}),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keyring = keyring
        self.region = region
        self.account_id = account_id
        self.services = services  # signing names of the APIs this port serves
        self.clock = clock

    async def __call__(self, request: Request) -> None:
        try:
            key = await self._authenticate(request)
        except SignatureError as exc:
            raise _json_error(exc) from None
        self._authorize(request, key)

    async def _authenticate(self, request: Request) -> AccessKey:
        authorization = _only_header(request, "authorization")
        if authorization is None:
            raise SignatureError(Problem.MISSING, "Request is missing Authentication Token")
        claim = sigv4.parse_authorization(authorization)
        timestamp = sigv4.request_timestamp(
            _only_header(request, "x-amz-date"), _only_header(request, "date")
        )
        sigv4.check_scope(claim, timestamp, region=self.region, services=self.services)
        key = _lookup(self.keyring, claim.access_key_id, _only_header(request, "x-amz-security-token"))
        sigv4.check_clock(timestamp, self.clock(), JSON_CLOCK_WINDOW_S)
        _check_signed(request, claim, names=frozenset({"content-type"}))
        # These APIs sign the body itself (no x-amz-content-sha256), so it is read here, under the
        # route's own cap: PayloadTooLarge answers an oversized one before anything is buffered.
        body = await request.body(self._body_limit(request))
        payload_hash = hashlib.sha256(body).hexdigest()
        return _verify(request, key, claim, timestamp, payload_hash, s3=False).key

    @staticmethod
    def _body_limit(request: Request) -> int:
        if request.method == "POST" and (request.path == "/" or request.path.startswith("/service/")):
            return CONTROL_BODY_BYTES  # the JSON 1.1 APIs, and Smithy RPC v2 CBOR (CloudWatch)
        if request.method == "POST" and parse_invocation_path(request.path) is not None:
            return MAX_PAYLOAD_BYTES
        return _OTHER_BODY_BYTES

    def _authorize(self, request: Request, key: AccessKey) -> None:
        if key.is_admin:
            return
        user = f"arn:aws:iam::{self.account_id}:user/{key.access_key_id}"
        invocation = parse_invocation_path(request.path) if request.method == "POST" else None
        if invocation is None:
            raise AccessDeniedException(
                f"User: {user} is not authorized to perform: {_action(request)}: this access key's "
                "role is 'invoke', which allows only sagemaker:InvokeEndpoint."
            )
        endpoint, streaming = invocation
        if not key.may_invoke(endpoint):
            action = "InvokeEndpointWithResponseStream" if streaming else "InvokeEndpoint"
            resource = f"arn:aws:sagemaker:{self.region}:{self.account_id}:endpoint/{endpoint.lower()}"
            raise AccessDeniedException(
                f"User: {user} is not authorized to perform: sagemaker:{action} on resource: {resource}: "
                f"this access key may invoke only {', '.join(key.endpoints)}."
            )


def _action(request: Request) -> str:
    """What a request asks to do, in IAM's words where there are some."""
    target = request.headers.get("x-amz-target")
    if request.path == "/" and target:
        prefix, _, operation = target.partition(".")
        return f"sagemaker:{operation}" if prefix == "SageMaker" else target
    return f"{request.method} {request.path}"


_PAYLOAD_HASHES = frozenset(
    {
        sigv4.UNSIGNED_PAYLOAD,
        STREAMING_SIGNED,
        f"{STREAMING_SIGNED}-TRAILER",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    }
)


def _s3_payload_hash(request: Request) -> str:
    declared = _only_header(request, "x-amz-content-sha256")
    if declared is None:
        raise SignatureError(
            Problem.PAYLOAD, "Missing required header for this request: x-amz-content-sha256"
        )
    declared = declared.strip()
    is_hex = len(declared) == 64 and all(c in "0123456789abcdefABCDEF" for c in declared)
    if not is_hex and declared not in _PAYLOAD_HASHES:
        raise SignatureError(
            Problem.PAYLOAD,
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER, "
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER], or a valid sha256 value.",
        )
    return declared


class S3Auth:
    """The embedded S3 store's `authenticate` hook (see s3.app.build_s3_app)."""

    def __init__(self, keyring: Keyring, *, region: str, clock: Callable[[], float] = time.time) -> None:
        self.keyring = keyring
        self.region = region
        self.clock = clock

    async def __call__(self, request: Request) -> None:
        names = {name for name, _ in request.query()}
        presigned = bool(names & sigv4.PRESIGN_PARAMETERS or names & sigv2.QUERY_PARAMETERS)
        try:
            key = self._authenticate(request, names)
        except SignatureError as exc:
            raise _s3_error(exc, presigned=presigned) from None
        if not key.is_admin:
            raise S3AccessDenied(
                f"Access Denied: the access key {key.access_key_id} has the role 'invoke', which may only "
                "call InvokeEndpoint."
            )

    def _authenticate(self, request: Request, names: set[str]) -> AccessKey:
        authorization = _only_header(request, "authorization")
        v4_query, v2_query = names & sigv4.PRESIGN_PARAMETERS, names & sigv2.QUERY_PARAMETERS
        if sum(map(bool, (authorization is not None, v4_query, v2_query))) > 1:
            raise SignatureError(
                Problem.MALFORMED,
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature "
                "query string parameter or the Authorization header should be specified",
            )
        if v4_query:
            return self._presigned(request)
        if v2_query:
            return self._presigned_v2(request)
        if authorization is None:
            raise SignatureError(Problem.MISSING, "Access Denied")
        claim = sigv4.parse_authorization(authorization)
        timestamp = sigv4.request_timestamp(
            _only_header(request, "x-amz-date"), _only_header(request, "date")
        )
        sigv4.check_scope(claim, timestamp, region=self.region, services=("s3",))
        key = _lookup(self.keyring, claim.access_key_id, _only_header(request, "x-amz-security-token"))
        sigv4.check_clock(timestamp, self.clock(), S3_CLOCK_WINDOW_S)
        payload_hash = _s3_payload_hash(request)
        _check_signed(request, claim)
        verified = _verify(request, key, claim, timestamp, payload_hash, s3=True)
        if payload_hash.startswith(STREAMING_SIGNED):
            checker = ChunkChecker(
                verified.signing_key,
                timestamp,
                claim.scope,
                claim.signature,
                trailer=payload_hash.endswith("-TRAILER"),
            )
            request.reader = CheckedBodyReader(request.reader, checker, _s3_error)
        return key

    def _presigned(self, request: Request) -> AccessKey:
        found = sigv4.parse_presigned(request.query())
        sigv4.check_scope(found.claim, found.timestamp, region=self.region, services=("s3",))
        key = _lookup(self.keyring, found.claim.access_key_id, found.security_token)
        signed_at = sigv4.parse_timestamp(found.timestamp) or 0.0
        now = self.clock()
        if now > signed_at + found.expires_s:
            raise SignatureError(Problem.EXPIRED, "Request has expired")
        if signed_at > now + S3_CLOCK_WINDOW_S:
            raise SignatureError(Problem.EXPIRED, "Request is not valid yet")
        _check_signed(request, found.claim)
        declared = _only_header(request, "x-amz-content-sha256") or sigv4.UNSIGNED_PAYLOAD
        if declared.startswith("STREAMING-"):
            raise SignatureError(Problem.PAYLOAD, "A presigned URL cannot carry an aws-chunked body.")
        payload = sigv4.UNSIGNED_PAYLOAD
        exclude = frozenset({"X-Amz-Signature"})
        return _verify(request, key, found.claim, found.timestamp, payload, s3=True, exclude=exclude).key

    def _presigned_v2(self, request: Request) -> AccessKey:
        params: dict[str, str] = {}
        for name, value in request.query():
            if name in sigv2.QUERY_PARAMETERS:
                if name in params:
                    raise SignatureError(
                        Problem.MALFORMED, f"The query parameter {name} appears more than once."
                    )
                params[name] = value
        if len(params) != len(sigv2.QUERY_PARAMETERS):
            raise SignatureError(
                Problem.MALFORMED,
                "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters",
            )
        expires = params["Expires"]
        if not expires.isascii() or not expires.isdigit() or len(expires) > 12:
            raise SignatureError(
                Problem.MALFORMED, f"Invalid date (should be seconds since epoch): {expires}"
            )
        key = _lookup(self.keyring, params["AWSAccessKeyId"], _only_header(request, "x-amz-security-token"))
        if self.clock() > int(expires):
            raise SignatureError(Problem.EXPIRED, "Request has expired")
        string = sigv2.string_to_sign(
            request.method, request.headers.items(), expires, _raw_path(request), request.query_string
        )
        expected = sigv2.sign(key.secret_access_key, string)
        if not hmac.compare_digest(expected.encode("ascii"), params["Signature"].encode("utf-8", "replace")):
            raise SignatureError(Problem.MISMATCH, "The request signature does not match.")
        return key
