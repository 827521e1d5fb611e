"""AWS Signature Version 4 as a server checks it: parse the claim, rebuild what was signed, compare.

Pure functions over strings and bytes (no HTTP, no I/O), so that they can be checked against
botocore's own signer and AWS's published examples. `api.auth` applies them to the SageMaker port and
to the embedded S3 store, and each renders a failure (`SignatureError`, with its `Problem`) in its own
vocabulary. The canonical forms follow botocore, which is what unchanged clients sign with (spec §3):

- header values are whitespace-collapsed, repeated headers joined with ",", names sorted;
- the query is split on "&" and "=", each side percent-decoded and re-encoded with only
  `A-Za-z0-9-_.~` left bare, then sorted;
- the path: for S3, exactly as sent (S3 signs the already-encoded path once); for every other
  service, dot segments and repeated slashes removed, then percent-encoded *again*.
"""

from __future__ import annotations

import calendar
import email.utils
import enum
import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "PRESIGN_PARAMETERS",
    "UNSIGNED_PAYLOAD",
    "Claim",
    "Presigned",
    "Problem",
    "SignatureError",
    "canonical_headers",
    "canonical_query",
    "canonical_request",
    "canonical_uri",
    "check_clock",
    "check_scope",
    "format_timestamp",
    "parse_authorization",
    "parse_presigned",
    "parse_timestamp",
    "request_timestamp",
    "sign",
    "signatures_match",
    "signing_key",
    "string_to_sign",
    "unsigned_headers",
]

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_PRESIGNED_EXPIRES = 7 * 24 * 3600  # a presigned URL lives at most a week, as on AWS
PRESIGN_PARAMETERS = frozenset(
    {"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
     "X-Amz-Signature", "X-Amz-Security-Token"}
)  # fmt: skip

_TIMESTAMP = re.compile(r"^\d{8}T\d{6}Z$")
_DATE = re.compile(r"^\d{8}$")
_SIGNATURE = re.compile(r"^[0-9a-fA-F]{64}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9a-z-]+$")  # an RFC 9110 token, lower case
_SCOPE_PART = re.compile(r"^[A-Za-z0-9_.+=@-]+$")
_QUERY_SAFE = "-_.~"
_ECHO_LIMIT = 256  # how much of a client's malformed value an error message repeats


class Problem(enum.Enum):
    """Why a request is not authenticated; each port names these in its own error codes."""

    MISSING = "missing"  # no Authorization header, no presigned query
    MALFORMED = "malformed"  # the header or the query parameters do not parse
    SCOPE = "scope"  # credential scope names another date, region, service or terminator
    UNKNOWN_KEY = "unknown-key"  # no such access key (or a session token we never issued)
    SKEWED = "skewed"  # X-Amz-Date too far from the server's clock
    EXPIRED = "expired"  # a presigned URL used outside its lifetime
    UNSIGNED_HEADER = "unsigned-header"  # a header that changes the request's meaning was not signed
    PAYLOAD = "payload"  # S3's x-amz-content-sha256 is missing or not a value S3 accepts
    MISMATCH = "mismatch"  # the recomputed signature differs: wrong secret or altered request


class SignatureError(Exception):
    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message


@dataclass(frozen=True)
class Claim:
    """Who a request says signed it, and how: the parsed Authorization header (or presigned query)."""

    access_key_id: str
    date: str  # the credential scope's yyyymmdd
    region: str
    service: str
    signed_headers: tuple[str, ...]  # lower case, sorted, unique
    signature: str  # 64 lower-case hex digits

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


@dataclass(frozen=True)
class Presigned:
    claim: Claim
    timestamp: str
    expires_s: int
    security_token: str | None


def _echo(value: str) -> str:
    return value if len(value) <= _ECHO_LIMIT else value[:_ECHO_LIMIT] + "…"


def _claim(credential: str, signed_headers: str, signature: str) -> Claim:
    parts = credential.split("/")
    if len(parts) != 5:
        raise SignatureError(
            Problem.MALFORMED,
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, "
            f"got '{_echo(credential)}'",
        )
    key_id, date, region, service, terminator = parts
    for label, value in (("access key id", key_id), ("region", region), ("service", service)):
        if not _SCOPE_PART.match(value):
            raise SignatureError(
                Problem.MALFORMED, f"The credential's {label} '{_echo(value)}' is empty or malformed."
            )
    if not _DATE.match(date) or parse_date(date) is None:
        raise SignatureError(
            Problem.MALFORMED, f"Invalid credential date '{_echo(date)}': it must be yyyyMMdd."
        )
    if terminator != TERMINATOR:
        raise SignatureError(
            Problem.SCOPE,
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', "
            f"not '{_echo(terminator)}'.",
        )
    names = signed_headers.split(";")
    if not all(_HEADER_NAME.match(name) for name in names):
        raise SignatureError(
            Problem.MALFORMED,
            f"SignedHeaders must be lower-case header names separated by ';', got '{_echo(signed_headers)}'.",
        )
    if len(set(names)) != len(names):
        raise SignatureError(Problem.MALFORMED, "SignedHeaders names a header more than once.")
    if "host" not in names:
        raise SignatureError(Problem.MALFORMED, "'Host' must be a 'SignedHeader' in the AWS Authorization.")
    if not _SIGNATURE.match(signature):
        raise SignatureError(
            Problem.MALFORMED, f"Signature must be 64 hexadecimal digits, got '{_echo(signature)}'."
        )
    return Claim(key_id, date, region, service, tuple(sorted(names)), signature.lower())


def parse_authorization(value: str) -> Claim:
    """`AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`, or SignatureError(MALFORMED/SCOPE)."""
    text = value.strip()
    scheme, _, rest = text.partition(" ")
    if scheme != ALGORITHM:
        raise SignatureError(
            Problem.MALFORMED,
            f"Unsupported authorization type '{_echo(scheme)}': sign requests with AWS Signature "
            f"Version 4 ({ALGORITHM}).",
        )
    params: dict[str, str] = {}
    for part in rest.split(",") if rest.strip() else ():
        name, equals, field_value = part.strip().partition("=")
        if not equals:
            raise SignatureError(
                Problem.MALFORMED,
                f"'{_echo(part.strip())}' not a valid key=value pair (missing equal-sign) in Authorization "
                f"header: '{_echo(text)}'.",
            )
        if name in params:
            raise SignatureError(
                Problem.MALFORMED, f"Authorization header repeats the '{_echo(name)}' parameter."
            )
        params[name] = field_value.strip()
    required = ("Credential", "SignedHeaders", "Signature")
    missing = [name for name in required if name not in params]
    if missing:
        said = " ".join(f"Authorization header requires '{name}' parameter." for name in missing)
        raise SignatureError(Problem.MALFORMED, f"{said} Authorization={_echo(text)}")
    unknown = sorted(set(params) - set(required))
    if unknown:
        raise SignatureError(
            Problem.MALFORMED, f"Authorization header has an unknown parameter '{_echo(unknown[0])}'."
        )
    return _claim(params["Credential"], params["SignedHeaders"], params["Signature"])


def parse_presigned(query: Sequence[tuple[str, str]]) -> Presigned:
    """The X-Amz-* query parameters of a presigned URL (already percent-decoded)."""
    params: dict[str, str] = {}
    for name, value in query:
        if name in PRESIGN_PARAMETERS:
            if name in params:
                raise SignatureError(Problem.MALFORMED, f"The query parameter {name} appears more than once.")
            params[name] = value
    required = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                "X-Amz-SignedHeaders", "X-Amz-Signature")  # fmt: skip
    missing = [name for name in required if name not in params]
    if missing:
        raise SignatureError(
            Problem.MALFORMED,
            "Query-string authentication requires the " + ", ".join(missing) + " parameter"
            + ("s." if len(missing) > 1 else "."),
        )  # fmt: skip
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise SignatureError(Problem.MALFORMED, f'X-Amz-Algorithm only supports "{ALGORITHM}".')
    expires_text = params["X-Amz-Expires"]
    if not expires_text.isascii() or not expires_text.isdigit() or len(expires_text) > 9:
        raise SignatureError(Problem.MALFORMED, "X-Amz-Expires should be a number")
    expires = int(expires_text)
    if expires > MAX_PRESIGNED_EXPIRES:
        raise SignatureError(
            Problem.MALFORMED,
            f"X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGNED_EXPIRES}",
        )
    claim = _claim(params["X-Amz-Credential"], params["X-Amz-SignedHeaders"], params["X-Amz-Signature"])
    timestamp = params["X-Amz-Date"]
    if parse_timestamp(timestamp) is None:
        raise SignatureError(
            Problem.MALFORMED, "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\""
        )
    return Presigned(claim, timestamp, expires, params.get("X-Amz-Security-Token"))


def parse_date(date: str) -> float | None:
    try:
        return calendar.timegm(time.strptime(date, "%Y%m%d"))
    except ValueError:
        return None


def parse_timestamp(timestamp: str) -> float | None:
    """Seconds since the epoch for `yyyymmddThhmmssZ`, or None if it is not one."""
    if not _TIMESTAMP.match(timestamp):
        return None
    try:
        return calendar.timegm(time.strptime(timestamp, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return None


def format_timestamp(seconds: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(seconds))


def request_timestamp(x_amz_date: str | None, date: str | None) -> str:
    """The signing time: X-Amz-Date, else the HTTP Date header, as `yyyymmddThhmmssZ`."""
    if x_amz_date is not None:
        if parse_timestamp(x_amz_date.strip()) is None:
            raise SignatureError(
                Problem.MALFORMED,
                f"Date must be in ISO-8601 'basic format'. Got '{_echo(x_amz_date)}'. "
                "See http://en.wikipedia.org/wiki/ISO_8601",
            )
        return x_amz_date.strip()
    if date is not None:
        try:
            parsed = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            raise SignatureError(Problem.MALFORMED, f"The Date header '{_echo(date)}' is not an HTTP date.")
        return format_timestamp(parsed.timestamp())
    raise SignatureError(
        Problem.MALFORMED,
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
    )


def check_scope(claim: Claim, timestamp: str, *, region: str, services: Iterable[str]) -> None:
    """The scope must name the request's own date, this server's region and a service it serves."""
    allowed = sorted(services)
    if claim.date != timestamp[:8]:
        raise SignatureError(
            Problem.SCOPE,
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{claim.date}' != '{timestamp[:8]}', from '{timestamp}'.",
        )
    if claim.service not in allowed:
        raise SignatureError(
            Problem.SCOPE,
            f"Credential should be scoped to correct service: '{' or '.join(allowed)}', "
            f"not '{claim.service}'.",
        )
    if claim.region != region:
        raise SignatureError(
            Problem.SCOPE,
            f"Credential should be scoped to a valid region, not '{claim.region}'. "
            f"This server's region is '{region}'.",
        )


def check_clock(timestamp: str, now: float, window_s: int) -> None:
    """AWS's ±window rule, with AWS's own wording (botocore never corrects a skewed clock)."""
    signed = parse_timestamp(timestamp)
    if signed is None:
        raise SignatureError(
            Problem.MALFORMED, f"Date must be in ISO-8601 'basic format'. Got '{timestamp}'."
        )
    minutes = window_s // 60
    if signed < now - window_s:
        raise SignatureError(
            Problem.SKEWED,
            f"Signature expired: {timestamp} is now earlier than {format_timestamp(now - window_s)} "
            f"({format_timestamp(now)} - {minutes} min.)",
        )
    if signed > now + window_s:
        raise SignatureError(
            Problem.SKEWED,
            f"Signature not yet current: {timestamp} is still later than {format_timestamp(now + window_s)} "
            f"({format_timestamp(now)} + {minutes} min.)",
        )


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, and consecutive slashes folded, as AWS services (and botocore) want."""
    kept: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            if kept:
                kept.pop()
        else:
            kept.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and kept else ""
    return first + "/".join(kept) + last


def canonical_uri(raw_path: str, *, s3: bool) -> str:
    if not raw_path:
        return "/"
    if s3:
        return raw_path
    return quote(_remove_dot_segments(raw_path), safe="/~")


def canonical_query(query_string: str, *, exclude: frozenset[str] = frozenset()) -> str:
    """Pairs decoded, re-encoded the one canonical way, sorted; `exclude` drops e.g. X-Amz-Signature."""
    pairs: list[tuple[str, str]] = []
    for part in query_string.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        raw_name = unquote_to_bytes(name)
        if raw_name.decode("latin-1") in exclude:
            continue
        pairs.append((quote(raw_name, safe=_QUERY_SAFE), quote(unquote_to_bytes(value), safe=_QUERY_SAFE)))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def canonical_headers(headers: Iterable[tuple[str, str]], signed: Sequence[str]) -> str:
    """`name:value\\n` for each signed header, in order; MISMATCH if one of them was not sent."""
    values: dict[str, list[str]] = {name: [] for name in signed}
    for name, value in headers:
        found = values.get(name.lower())
        if found is not None:
            found.append(" ".join(value.split()))
    absent = [name for name, found in values.items() if not found]
    if absent:
        raise SignatureError(
            Problem.MISMATCH,
            f"The request does not carry the signed header{'s' if len(absent) > 1 else ''} "
            f"{', '.join(absent)}.",
        )
    return "".join(f"{name}:{','.join(found)}\n" for name, found in sorted(values.items()))


def unsigned_headers(
    headers: Iterable[tuple[str, str]],
    signed: Sequence[str],
    *,
    prefixes: tuple[str, ...],
    names: frozenset[str] = frozenset(),
    exempt: frozenset[str] = frozenset(),
) -> list[str]:
    """Headers that shape the request (by prefix or by name) but are outside the signature."""
    signed_set = set(signed)
    found: dict[str, None] = {}
    for name, _ in headers:
        lowered = name.lower()
        if lowered in signed_set or lowered in exempt:
            continue
        if lowered in names or lowered.startswith(prefixes):
            found[lowered] = None
    return list(found)


def canonical_request(
    method: str, uri: str, query: str, headers: str, signed: Sequence[str], payload_hash: str
) -> str:
    return "\n".join((method, uri, query, headers, ";".join(signed), payload_hash))


def string_to_sign(timestamp: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{timestamp}\n{scope}\n{digest}"


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.digest(f"AWS4{secret}".encode(), date.encode(), "sha256")
    for part in (region, service, TERMINATOR):
        key = hmac.digest(key, part.encode(), "sha256")
    return key


def sign(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).hexdigest()


def signatures_match(expected: str, given: str) -> bool:
    """Constant time, so the time a wrong guess takes says nothing about how close it was."""
    return hmac.compare_digest(expected.encode("ascii"), given.encode("ascii"))
