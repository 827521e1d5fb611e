"""Whether the artifact policy allows a model data URL at all, decided before anything is fetched.

CreateModel calls `check_source_allowed` so that a metadata, loopback or private address, a bucket
or a local path outside what the policy allows is refused with a ValidationException at once, and
no connection is ever attempted for it (reliability.md matrix row 12). The fetch makes every check
again (`sources`, `netguard`), because DNS answers and files can change between the two.
"""

from __future__ import annotations

import urllib.parse

from moorage.artifacts import netguard
from moorage.artifacts.sources import Location, allowed_local_path, display_url, parse_location
from moorage.errors import ArtifactSourceError
from moorage.settings import ArtifactPolicy

__all__ = ["check_bucket", "check_source_allowed"]


def check_source_allowed(url: str, policy: ArtifactPolicy, *, resolve_timeout_s: float = 2.0) -> None:
    """ArtifactSourceError naming the rule when `policy` refuses `url`; None when it may be fetched.

    Nothing is downloaded and nothing is connected to; a host name is resolved for at most
    `resolve_timeout_s` (one that does not resolve in time is left to the fetch to judge).
    """
    location = parse_location(url)
    if location.scheme == "s3":
        check_bucket(location, policy)
    elif location.scheme == "http":
        parts = urllib.parse.urlsplit(url)
        https = parts.scheme.lower() == "https"
        try:
            port = parts.port or (443 if https else 80)
        except ValueError as exc:
            raise ArtifactSourceError(f"model data URL {display_url(url)!r} has a bad port") from exc
        netguard.precheck_http_target(
            parts.hostname or "",
            port,
            url=display_url(url),
            policy=policy,
            resolve_timeout_s=resolve_timeout_s,
        )
    else:
        allowed_local_path(location, policy)


def check_bucket(location: Location, policy: ArtifactPolicy) -> None:
    allowed = policy.allowed_s3_buckets
    if allowed and location.bucket not in allowed:
        raise ArtifactSourceError(
            f"model data {location.url!r} is not allowed: bucket {location.bucket!r} is not in "
            f"MOORAGE_ALLOWED_S3_BUCKETS ({', '.join(allowed)})"
        )
