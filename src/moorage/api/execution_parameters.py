"""SageMaker's batch container contract for `moorage serve-model`: `GET /execution-parameters`.

A batch transform container is started with `SAGEMAKER_BATCH=true` and, when known,
`SAGEMAKER_MAX_CONCURRENT_TRANSFORMS`, `SAGEMAKER_BATCH_STRATEGY` and `SAGEMAKER_MAX_PAYLOAD_IN_MB`;
SageMaker may ask it `GET /execution-parameters` for the values a job left unset, and sends requests
of up to MaxPayloadInMB. SageMaker's PyTorch container ignores all of it (TorchServe answers 404 and
keeps its 6.5 MB request limit, so jobs meet 413s); moorage honours it: in batch mode the answer is
`{"MaxConcurrentTransforms": n, "BatchStrategy": "...", "MaxPayloadInMB": m}` and the request cap of
/invocations is MaxPayloadInMB MiB. Out of batch mode (no SAGEMAKER_BATCH) neither applies: the path is
404 and the cap is the real-time 6 MiB, as a real-time container's.

Values are checked when the container starts, so a wrong one stops it with a message naming the
variable rather than failing requests later. MaxPayloadInMB may be 1 to 60 (the worker protocol frames
at most 64 MiB; SageMaker allows 100, and 0 for chunked bodies, which no handler here can read).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from moorage.errors import ConfigError
from moorage.settings import MAX_PAYLOAD_BYTES
from moorage.transform.config import DEFAULT_PAYLOAD_MB
from moorage.transform.operations import MAX_PAYLOAD_MB

__all__ = ["BatchParameters", "request_cap"]

DEFAULT_STRATEGY = "MULTI_RECORD"  # what the SDK and local mode send
_STRATEGIES = ("MULTI_RECORD", "SINGLE_RECORD")
_MIB = 1024 * 1024


def _integer(environ: Mapping[str, str], name: str, low: int, high: int | None) -> int | None:
    text = environ.get(name, "").strip()
    if not text:
        return None
    bound = f"{low} to {high}" if high is not None else f"at least {low}"
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number; give {bound}.") from None
    if value < low or (high is not None and value > high):
        extra = (
            " (moorage's worker protocol frames at most 64 MiB; SageMaker's limit is 100)"
            if high is not None and value > high
            else ""
        )
        raise ConfigError(f"{name}={value} is out of range; give {bound}{extra}.")
    return value


@dataclass(frozen=True)
class BatchParameters:
    """The batch contract's values; `concurrency` None means one per worker (known once they start)."""

    concurrency: int | None
    strategy: str
    payload_mb: int

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> BatchParameters | None:
        """None out of batch mode (SAGEMAKER_BATCH unset or false); ConfigError for a bad value."""
        if environ.get("SAGEMAKER_BATCH", "").strip().lower() not in ("true", "1"):
            return None
        strategy = environ.get("SAGEMAKER_BATCH_STRATEGY", "").strip().upper() or DEFAULT_STRATEGY
        if strategy not in _STRATEGIES:
            raise ConfigError(
                f"SAGEMAKER_BATCH_STRATEGY={environ['SAGEMAKER_BATCH_STRATEGY']!r} is not one of "
                f"{', '.join(_STRATEGIES)}."
            )
        payload = _integer(environ, "SAGEMAKER_MAX_PAYLOAD_IN_MB", 1, MAX_PAYLOAD_MB)
        return cls(
            concurrency=_integer(environ, "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", 1, None),
            strategy=strategy,
            payload_mb=DEFAULT_PAYLOAD_MB if payload is None else payload,
        )

    @property
    def max_request_bytes(self) -> int:
        return self.payload_mb * _MIB

    def answer(self, workers: int) -> dict[str, int | str]:
        """The /execution-parameters body; `workers`: the model's workers, the default concurrency."""
        return {
            "MaxConcurrentTransforms": self.concurrency or workers,
            "BatchStrategy": self.strategy,
            "MaxPayloadInMB": self.payload_mb,
        }


def request_cap(parameters: BatchParameters | None) -> int:
    """The largest /invocations body: MaxPayloadInMB in batch mode, else the real-time 6 MiB."""
    return parameters.max_request_bytes if parameters is not None else MAX_PAYLOAD_BYTES
