"""Every knob moorage reads, with its default, in one file.

Two objects, both frozen and both built from an environment that the caller passes in (nothing here
reads `os.environ` at import):

- `Settings`: the server's own configuration: command-line flags first, then `MOORAGE_*` variables.
- `ContainerConfig`: what a model's container environment asks of the model server. These are the
  `SAGEMAKER_*` variables that SageMaker's PyTorch serving stack honours, read from the model's
  `Environment` (or from the process environment for `moorage serve-model`).

A bad value raises `ConfigError` naming the variable, so a typo fails at start, not at first request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from moorage.errors import ConfigError

__all__ = [
    "MAX_PAYLOAD_BYTES",
    "ArtifactPolicy",
    "ContainerConfig",
    "HttpLimits",
    "RaySettings",
    "Settings",
    "WorkerSettings",
    "env_bool",
    "env_float",
    "env_int",
]

# InvokeEndpoint's BodyBlob maximum in botocore's model, for requests and responses alike (spec §4.3).
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024

BackendName = Literal["local", "ray"]
AuthMode = Literal["none", "sigv4"]
# The web console (moorage.console): "auto" serves it with auth on or on a loopback bind only.
ConsoleMode = Literal["auto", "on", "off"]


def env_int(environ: Mapping[str, str], name: str, default: int, *, minimum: int | None = None) -> int:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def env_float(environ: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


def env_bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} must be true or false")


def _env_list(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = environ.get(name, "")
    return tuple(item.strip() for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class HttpLimits:
    """What one connection may cost the server before it is cut off (slow clients, floods)."""

    max_request_bytes: int = MAX_PAYLOAD_BYTES
    max_header_bytes: int = 64 * 1024
    header_timeout_s: float = 10.0  # first byte of a request → end of its headers
    body_idle_timeout_s: float = 10.0  # longest silence while a body is arriving
    body_min_rate_bps: int = 64 * 1024  # slower bodies are cut off (after the idle allowance)
    keepalive_timeout_s: float = 20.0
    max_connections: int = 1024
    # One client address (an IPv6 /64) may hold at most this many of them, so one peer cannot take all.
    max_connections_per_client: int = 256
    # A new connection must send its first request line within this, or it is closed (idle floods).
    request_line_timeout_s: float = 5.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> HttpLimits:
        return cls(
            header_timeout_s=env_float(environ, "MOORAGE_HEADER_TIMEOUT", 10.0, minimum=0.1),
            body_idle_timeout_s=env_float(environ, "MOORAGE_BODY_IDLE_TIMEOUT", 10.0, minimum=0.1),
            keepalive_timeout_s=env_float(environ, "MOORAGE_KEEPALIVE_TIMEOUT", 20.0, minimum=0.1),
            max_connections=env_int(environ, "MOORAGE_MAX_CONNECTIONS", 1024, minimum=1),
            max_connections_per_client=env_int(environ, "MOORAGE_MAX_CONNECTIONS_PER_CLIENT", 256, minimum=1),
            request_line_timeout_s=env_float(environ, "MOORAGE_REQUEST_LINE_TIMEOUT", 5.0, minimum=0.1),
        )


@dataclass(frozen=True)
class WorkerSettings:
    """How worker processes are started, fed and stopped."""

    # "fork": workers are forked from a warm process that has already imported torch (fast, shares
    # memory); "spawn": each worker is a fresh interpreter (slower; for platforms without fork).
    start_method: Literal["fork", "spawn"] = "fork"
    # Imported once by the fork server so that every worker starts with them already loaded.
    preload: tuple[str, ...] = (
        "numpy",
        "torch",
        "torchvision",
        "PIL.Image",
        "requests",
        "moorage.handler.pipeline",
    )
    # SageMaker's NPY decoder unpickles object arrays; moorage refuses unless this is turned on.
    npy_allow_pickle: bool = False
    # SageMaker puts the handler's traceback in the error body; moorage logs it instead unless asked.
    tracebacks_in_errors: bool = False
    drain_grace_s: float = 30.0  # SageMaker: SIGTERM, then SIGKILL 30 s later
    startup_timeout_s: float = 600.0  # model_fn must return within this (ContainerStartupHealthCheck...)
    ping_interval_s: float = 5.0  # idle workers are pinged this often ...
    ping_timeout_s: float = 2.0  # ... and replaced if they do not answer within this
    max_queue_per_variant: int = 256  # requests waiting for a free worker, beyond → ThrottlingException
    # RLIMIT_DATA of every worker, in bytes. None: derived from the instance type (runtime/instance_types.py);
    # 0: no limit. A handler that allocates past it gets MemoryError (reliability.md row 4).
    memory_limit_bytes: int | None = None
    # An InService endpoint whose instances cannot start (after a restart, or once every replacement
    # failed) is retried after this delay, doubled at each failure up to the cap (control/reconciler.py).
    recovery_backoff_s: float = 1.0
    recovery_backoff_max_s: float = 300.0
    # MOORAGE_SANDBOX: "auto" confines workers and pip with what the kernel offers (Landlock) and says so
    # at start when it offers nothing; "require" refuses to start without Landlock; "off" never confines.
    sandbox: Literal["auto", "require", "off"] = "auto"
    # MOORAGE_SANDBOX_WRITABLE: directories every sandboxed worker may also write (a shared output
    # volume), comma-separated. Never the data dir or a directory above it: that undoes the sandbox.
    sandbox_writable: tuple[str, ...] = ()
    # Streaming handlers (moorage.streaming): a worker runs at most stream_window parts ahead of the client
    # (credit), and a stream that sends no part for stream_idle_timeout_s while the client waits ends with
    # ModelInvocationTimeExceeded (the invocation timeout still bounds the whole stream).
    stream_window: int = 16
    stream_idle_timeout_s: float = 60.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> WorkerSettings:
        method = environ.get("MOORAGE_WORKER_START", "fork")
        if method not in ("fork", "spawn"):
            raise ConfigError(f"MOORAGE_WORKER_START={method!r} must be fork or spawn")
        preload = _env_list(environ, "MOORAGE_PRELOAD") or cls.preload
        return cls(
            start_method="fork" if method == "fork" else "spawn",
            preload=preload,
            npy_allow_pickle=env_bool(environ, "MOORAGE_NPY_ALLOW_PICKLE", False),
            tracebacks_in_errors=env_bool(environ, "MOORAGE_TRACEBACKS_IN_ERRORS", False),
            drain_grace_s=env_float(environ, "MOORAGE_DRAIN_GRACE", 30.0),
            startup_timeout_s=env_float(environ, "MOORAGE_STARTUP_TIMEOUT", 600.0, minimum=1.0),
            ping_interval_s=env_float(environ, "MOORAGE_PING_INTERVAL", 5.0, minimum=0.05),
            ping_timeout_s=env_float(environ, "MOORAGE_PING_TIMEOUT", 2.0, minimum=0.05),
            max_queue_per_variant=env_int(environ, "MOORAGE_MAX_QUEUE", 256, minimum=1),
            memory_limit_bytes=(
                env_int(environ, "MOORAGE_WORKER_MEMORY_LIMIT", 0, minimum=0)
                if environ.get("MOORAGE_WORKER_MEMORY_LIMIT", "").strip()
                else None
            ),
            recovery_backoff_s=env_float(environ, "MOORAGE_RECOVERY_BACKOFF", 1.0, minimum=0.01),
            recovery_backoff_max_s=env_float(environ, "MOORAGE_RECOVERY_BACKOFF_MAX", 300.0, minimum=0.01),
            sandbox=_check_choice(  # type: ignore[arg-type]
                "MOORAGE_SANDBOX", environ.get("MOORAGE_SANDBOX", "auto"), ("auto", "require", "off")
            ),
            sandbox_writable=_env_list(environ, "MOORAGE_SANDBOX_WRITABLE"),
            stream_window=env_int(environ, "MOORAGE_STREAM_WINDOW", 16, minimum=1),
            stream_idle_timeout_s=env_float(environ, "MOORAGE_STREAM_IDLE_TIMEOUT", 60.0, minimum=0.01),
        )


@dataclass(frozen=True)
class ArtifactPolicy:
    """Which model sources may be fetched, and how much they may cost (the security boundary)."""

    max_download_bytes: int = 20 * 1024**3
    max_extracted_bytes: int = 50 * 1024**3
    max_members: int = 100_000
    # Disk as a budget (docs/security.md, "Model trees and disk"): extraction keeps this much of the
    # cache's file system free, and trees no running endpoint uses are evicted (least recently used
    # first) once the extracted trees add up to more than cache_max_bytes.
    disk_reserve_bytes: int = 1024**3
    cache_max_bytes: int = 20 * 1024**3
    # Empty means "any": the laptop default while auth is off and the server listens on loopback.
    allowed_file_roots: tuple[str, ...] = ()
    allowed_s3_buckets: tuple[str, ...] = ()
    allowed_http_hosts: tuple[str, ...] = ()
    # http(s) sources that resolve to loopback, private, link-local or metadata addresses are refused
    # unless the host is in allowed_http_hosts.
    block_private_addresses: bool = True
    allow_file_sources: bool = True
    # requirements.txt is model input: option lines (-i, -r, -e, --find-links …), local paths and direct
    # URLs are refused unless the operator trusts every model's requirements (MOORAGE_PIP_TRUST_REQUIREMENTS).
    pip_trust_requirements: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ArtifactPolicy:
        return cls(
            max_download_bytes=env_int(
                environ, "MOORAGE_MAX_ARTIFACT_BYTES", cls.max_download_bytes, minimum=1
            ),
            max_extracted_bytes=env_int(
                environ, "MOORAGE_MAX_EXTRACTED_BYTES", cls.max_extracted_bytes, minimum=1
            ),
            max_members=env_int(environ, "MOORAGE_MAX_ARCHIVE_MEMBERS", cls.max_members, minimum=1),
            disk_reserve_bytes=env_int(
                environ, "MOORAGE_DISK_RESERVE_BYTES", cls.disk_reserve_bytes, minimum=0
            ),
            cache_max_bytes=env_int(environ, "MOORAGE_CACHE_MAX_BYTES", cls.cache_max_bytes, minimum=0),
            allowed_file_roots=tuple(
                str(_absolute(Path(root))) for root in _env_list(environ, "MOORAGE_ALLOWED_FILE_ROOTS")
            ),
            allowed_s3_buckets=_env_list(environ, "MOORAGE_ALLOWED_S3_BUCKETS"),
            allowed_http_hosts=_env_list(environ, "MOORAGE_ALLOWED_HTTP_HOSTS"),
            block_private_addresses=env_bool(environ, "MOORAGE_BLOCK_PRIVATE_ADDRESSES", True),
            allow_file_sources=env_bool(environ, "MOORAGE_ALLOW_FILE_SOURCES", True),
            pip_trust_requirements=env_bool(environ, "MOORAGE_PIP_TRUST_REQUIREMENTS", False),
        )


@dataclass(frozen=True)
class RaySettings:
    """The Ray backend's knobs (`--backend ray`); the cluster itself is configured by Ray's own means."""

    # For the private single-node cluster moorage starts when no --ray-address is given: the logical CPUs
    # and memory that node offers (default: this machine's cores, and Ray's own estimate of memory).
    cpus: int | None = None
    memory_bytes: int | None = None
    # How long a worker may wait for a node with room for it before its instance fails to start.
    placement_timeout_s: float = 60.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> RaySettings:
        cpus = env_int(environ, "MOORAGE_RAY_CPUS", 1, minimum=1) if environ.get("MOORAGE_RAY_CPUS") else None
        memory_gib = env_float(environ, "MOORAGE_RAY_MEMORY_GIB", 0.0)
        return cls(
            cpus=cpus,
            memory_bytes=int(memory_gib * 1024**3) if memory_gib else None,
            placement_timeout_s=env_float(environ, "MOORAGE_RAY_PLACEMENT_TIMEOUT", 60.0, minimum=1.0),
        )


def _default_data_dir(environ: Mapping[str, str]) -> Path:
    explicit = environ.get("MOORAGE_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "moorage"


def _absolute(path: Path) -> Path:
    """`path` made absolute against the working directory now, once: workers run in their model dir,
    so a relative data dir would name another place there (`--data-dir demo-data/server`)."""
    return Path(os.path.abspath(path.expanduser()))


@dataclass(frozen=True)
class Settings:
    """The server's configuration, built once in `cli.py` and passed down."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    s3_port: int | None = 9000
    backend: BackendName = "local"
    ray_address: str | None = None
    auth: AuthMode = "none"
    allow_public_bind: bool = False
    # Host names clients may use besides localhost, loopback addresses and the bound address ("*": any);
    # requests naming another Host are refused (DNS rebinding; httpd/hosts.py).
    server_names: tuple[str, ...] = ()
    region: str = "us-east-1"
    account_id: str = "000000000000"
    cpu_count: int = field(default_factory=lambda: os.cpu_count() or 1)
    http: HttpLimits = field(default_factory=HttpLimits)
    workers: WorkerSettings = field(default_factory=WorkerSettings)
    artifacts: ArtifactPolicy = field(default_factory=ArtifactPolicy)
    ray: RaySettings = field(default_factory=RaySettings)
    # How often Application Auto Scaling's target tracking reads the invocation counters (CloudWatch
    # evaluates SageMakerVariantInvocationsPerInstance once a minute).
    autoscale_period_s: float = 60.0
    # A serverless variant (moorage.serverless) stops its instances after this long without a request
    # (keeping ProvisionedConcurrency warm); the next call starts one and waits for it.
    serverless_idle_s: float = 300.0
    # Each endpoint log file is copy-truncated at this size, keeping one old generation (moorage.logs).
    log_max_bytes: int = 50 * 1024 * 1024
    # A transform job's S3Prefix or manifest may name at most this many input objects (moorage.transform).
    transform_max_objects: int = 100_000
    # Async inference (moorage.asyncinf): the largest input read from S3 (SageMaker's 1 GB), how often
    # waiting requests look for instances, and how many times an SNS notification is tried (backoff
    # doubling from 0.5 s). Inputs and answers longer than large_body_bytes cross between the server
    # and the worker as files in the worker's scratch dir, never whole in the server's memory
    # (bench/CHOICES.md, "Large bodies"). While an answer's result object is written, the next request
    # runs; at most async_max_publishing per endpoint are written at once (docs/async.md, "Figures").
    async_max_input_bytes: int = 1024 * 1024 * 1024
    large_body_bytes: int = 1024 * 1024
    async_recheck_s: float = 0.5
    async_notify_attempts: int = 5
    async_max_publishing: int = 8
    # Data capture (moorage.capture): captured records wait in memory (at most capture_buffer_bytes; more
    # are dropped and counted) and are written as one JSON Lines file per endpoint, variant and hour
    # every capture_flush_s, or sooner once capture_file_bytes are waiting.
    capture_flush_s: float = 10.0
    capture_file_bytes: int = 8 * 1024 * 1024
    capture_buffer_bytes: int = 64 * 1024 * 1024
    # Shadow variants (runtime/shadow.py): at most this many copies of requests outstanding at once; more
    # are dropped and counted.
    shadow_max_outstanding: int = 64
    # CloudWatch (moorage.cloudwatch): the runtime's counters are sampled into the metric history every
    # cloudwatch_sample_s (alarms are evaluated then too), kept cloudwatch_retention_s, and alarm or query
    # periods shorter than cloudwatch_min_period_s are refused (CloudWatch's own floor is 10 s).
    cloudwatch_sample_s: float = 10.0
    cloudwatch_retention_s: float = 24 * 3600.0
    cloudwatch_min_period_s: int = 10
    # Multi-model endpoints (moorage.multimodel): each instance's memory budget for loaded models (None:
    # 90% of the instance type's memory, or half this machine's for types without one), a cap on models
    # loaded per instance (0: the budget alone decides), how long a first call waits for its model before
    # ModelNotReadyException (SageMaker: 60 s) and how long a load may go on in the background (360 s).
    mme_memory_bytes: int | None = None
    mme_max_models: int = 0
    mme_ready_wait_s: float = 60.0
    mme_load_timeout_s: float = 360.0
    # Workers each multi-model instance forks ahead of its next loads (docs/multi-model.md, "Cold loads"):
    # a first call then skips the fork and the worker's start-up; 0 forks at each load.
    mme_spare_workers: int = 1
    # A model with this many calls in flight on each of its copies is loaded on one more instance (the
    # one with the most room that lacks it); 0: never.
    mme_spread_after: int = 4
    # The web console at /console/ (moorage.console): "auto" serves it when --auth sigv4 is on or the bind
    # is loopback, never to the network without authentication; "on" and "off" say so outright.
    console: ConsoleMode = "auto"

    def __post_init__(self) -> None:
        # Every path below derives from data_dir; resolving it here covers flags, variables and replace().
        object.__setattr__(self, "data_dir", _absolute(self.data_dir))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], **flags: object) -> Settings:
        """Defaults ← MOORAGE_* / AWS_* variables ← explicit flags (flags given as None are ignored)."""
        region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        account = environ.get("MOORAGE_ACCOUNT_ID", "000000000000")
        if not (len(account) == 12 and account.isdigit()):
            raise ConfigError(f"MOORAGE_ACCOUNT_ID={account!r} must be 12 digits, like an AWS account id")
        backend = environ.get("MOORAGE_BACKEND", "local")
        auth = environ.get("MOORAGE_AUTH", "none")
        s3_port: int | None = env_int(environ, "MOORAGE_S3_PORT", 9000, minimum=0)
        settings = cls(
            data_dir=_default_data_dir(environ),
            host=environ.get("MOORAGE_HOST", "127.0.0.1"),
            port=env_int(environ, "MOORAGE_PORT", 8080, minimum=0),
            s3_port=s3_port,
            backend=_check_choice("MOORAGE_BACKEND", backend, ("local", "ray")),  # type: ignore[arg-type]
            ray_address=environ.get("MOORAGE_RAY_ADDRESS") or None,
            auth=_check_choice("MOORAGE_AUTH", auth, ("none", "sigv4")),  # type: ignore[arg-type]
            allow_public_bind=env_bool(environ, "MOORAGE_ALLOW_PUBLIC_BIND", False),
            server_names=_env_list(environ, "MOORAGE_SERVER_NAMES"),
            region=region,
            account_id=account,
            cpu_count=env_int(environ, "MOORAGE_CPUS", os.cpu_count() or 1, minimum=1),
            http=HttpLimits.from_environ(environ),
            workers=WorkerSettings.from_environ(environ),
            artifacts=ArtifactPolicy.from_environ(environ),
            ray=RaySettings.from_environ(environ),
            autoscale_period_s=env_float(environ, "MOORAGE_AUTOSCALE_PERIOD", 60.0, minimum=0.1),
            serverless_idle_s=env_float(environ, "MOORAGE_SERVERLESS_IDLE_SECONDS", 300.0, minimum=0.05),
            log_max_bytes=env_int(environ, "MOORAGE_LOG_MAX_BYTES", cls.log_max_bytes, minimum=64 * 1024),
            transform_max_objects=env_int(
                environ, "MOORAGE_TRANSFORM_MAX_OBJECTS", cls.transform_max_objects, minimum=1
            ),
            async_max_input_bytes=env_int(
                environ, "MOORAGE_ASYNC_MAX_INPUT_BYTES", cls.async_max_input_bytes, minimum=1
            ),
            async_recheck_s=env_float(environ, "MOORAGE_ASYNC_RECHECK", cls.async_recheck_s, minimum=0.01),
            large_body_bytes=env_int(environ, "MOORAGE_LARGE_BODY_BYTES", cls.large_body_bytes, minimum=0),
            async_notify_attempts=env_int(
                environ, "MOORAGE_ASYNC_NOTIFY_ATTEMPTS", cls.async_notify_attempts, minimum=1
            ),
            async_max_publishing=env_int(
                environ, "MOORAGE_ASYNC_MAX_PUBLISHING", cls.async_max_publishing, minimum=1
            ),
            capture_flush_s=env_float(environ, "MOORAGE_CAPTURE_FLUSH", cls.capture_flush_s, minimum=0.01),
            capture_file_bytes=env_int(
                environ, "MOORAGE_CAPTURE_FILE_BYTES", cls.capture_file_bytes, minimum=1024
            ),
            capture_buffer_bytes=env_int(
                environ, "MOORAGE_CAPTURE_BUFFER_BYTES", cls.capture_buffer_bytes, minimum=1024
            ),
            cloudwatch_sample_s=env_float(
                environ, "MOORAGE_CLOUDWATCH_SAMPLE", cls.cloudwatch_sample_s, minimum=0.05
            ),
            cloudwatch_retention_s=env_float(
                environ, "MOORAGE_CLOUDWATCH_RETENTION", cls.cloudwatch_retention_s, minimum=1.0
            ),
            cloudwatch_min_period_s=env_int(
                environ, "MOORAGE_CLOUDWATCH_MIN_PERIOD", cls.cloudwatch_min_period_s, minimum=1
            ),
            mme_memory_bytes=(
                env_int(environ, "MOORAGE_MME_MEMORY_BYTES", 0, minimum=1)
                if environ.get("MOORAGE_MME_MEMORY_BYTES", "").strip()
                else None
            ),
            mme_max_models=env_int(environ, "MOORAGE_MME_MAX_MODELS", cls.mme_max_models, minimum=0),
            mme_ready_wait_s=env_float(environ, "MOORAGE_MME_READY_WAIT", cls.mme_ready_wait_s, minimum=0.01),
            mme_load_timeout_s=env_float(
                environ, "MOORAGE_MME_LOAD_TIMEOUT", cls.mme_load_timeout_s, minimum=1.0
            ),
            mme_spare_workers=env_int(environ, "MOORAGE_MME_SPARE_WORKERS", cls.mme_spare_workers, minimum=0),
            mme_spread_after=env_int(environ, "MOORAGE_MME_SPREAD_AFTER", cls.mme_spread_after, minimum=0),
            shadow_max_outstanding=env_int(
                environ, "MOORAGE_SHADOW_MAX_OUTSTANDING", cls.shadow_max_outstanding, minimum=1
            ),
            console=_check_choice(  # type: ignore[arg-type]
                "MOORAGE_CONSOLE", environ.get("MOORAGE_CONSOLE", "auto"), ("auto", "on", "off")
            ),
        )
        given = {name: value for name, value in flags.items() if value is not None}
        if "data_dir" in given:
            given["data_dir"] = Path(str(given["data_dir"])).expanduser()
        if "backend" in given:
            _check_choice("--backend", str(given["backend"]), ("local", "ray"))
        if "auth" in given:
            _check_choice("--auth", str(given["auth"]), ("none", "sigv4"))
        return replace(settings, **given)  # type: ignore[arg-type]

    @property
    def db_path(self) -> Path:
        return self.data_dir / "state.sqlite3"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def s3_dir(self) -> Path:
        return self.data_dir / "s3"


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of: {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class ContainerConfig:
    """The model server settings a SageMaker PyTorch container reads from its environment (spec §2.2).

    Deviation, on purpose: SAGEMAKER_MODEL_SERVER_TIMEOUT is honoured. The 2.0.25 toolkit loses it to
    a missing newline in its TorchServe config and falls back to 120 s (docs/compatibility.md).

    Reproduced: once any SAGEMAKER_TS_* variable is set, the toolkit writes a per-model TorchServe
    setting whose workers are SAGEMAKER_TS_MIN_WORKERS (else 1) and whose response timeout is
    SAGEMAKER_TS_RESPONSE_TIMEOUT (else 60 s); TorchServe lets it win over SAGEMAKER_MODEL_SERVER_WORKERS
    and SAGEMAKER_MODEL_SERVER_TIMEOUT, which `superseded` then names (the variant logs why).
    """

    program: str = "inference"  # module name: SAGEMAKER_PROGRAM without ".py"
    default_accept: str = "application/json"
    workers: int | None = None  # None: one per GPU, else one per vCPU of the instance
    timeout_s: float = 60.0
    batch_size: int = 1
    max_batch_delay_ms: float = 100.0
    submit_directory: str | None = None  # legacy layout: where inference.py comes from
    torch_threads: int | None = None  # None: adaptive (see runtime.cpu); else fixed per worker
    ts_model_settings: tuple[str, ...] = ()  # the SAGEMAKER_TS_* variables set (per-model settings on)
    superseded: tuple[str, ...] = ()  # "NAME=value" of variables those per-model settings override

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> ContainerConfig:
        program = env.get("SAGEMAKER_PROGRAM", "inference.py").strip() or "inference.py"
        if program.endswith(".py"):
            program = program[: -len(".py")]
        workers_raw = env.get("SAGEMAKER_MODEL_SERVER_WORKERS")
        workers = env_int(env, "SAGEMAKER_MODEL_SERVER_WORKERS", 1, minimum=1) if workers_raw else None
        timeout = env_float(env, "SAGEMAKER_MODEL_SERVER_TIMEOUT", 60.0, minimum=0.001)
        ts_set = tuple(name for name in _TS_MODEL_VARIABLES if env.get(name, "").strip())
        superseded: tuple[str, ...] = ()
        if ts_set:
            # TorchServe starts a model's minWorkers, and its model-level responseTimeout wins.
            workers = env_int(env, "SAGEMAKER_TS_MIN_WORKERS", 1, minimum=1)
            timeout = env_float(env, "SAGEMAKER_TS_RESPONSE_TIMEOUT", 60.0, minimum=0.001)
            superseded = tuple(
                f"{name}={env[name].strip()}"
                for name in ("SAGEMAKER_MODEL_SERVER_WORKERS", "SAGEMAKER_MODEL_SERVER_TIMEOUT")
                if env.get(name, "").strip()
            )
        threads: int | None = None
        if env.get("MOORAGE_TORCH_THREADS"):
            threads = env_int(env, "MOORAGE_TORCH_THREADS", 1, minimum=1)
        elif env.get("OMP_NUM_THREADS"):
            threads = env_int(env, "OMP_NUM_THREADS", 1, minimum=1)
        return cls(
            program=program,
            default_accept=env.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT") or "application/json",
            workers=workers,
            timeout_s=timeout,
            batch_size=env_int(env, "SAGEMAKER_TS_BATCH_SIZE", 1, minimum=1),
            max_batch_delay_ms=env_float(env, "SAGEMAKER_TS_MAX_BATCH_DELAY", 100.0),
            submit_directory=env.get("SAGEMAKER_SUBMIT_DIRECTORY") or None,
            torch_threads=threads,
            ts_model_settings=ts_set,
            superseded=superseded,
        )


# Any of these makes SageMaker's PyTorch toolkit write a per-model TorchServe setting (ts_environment.py).
_TS_MODEL_VARIABLES = (
    "SAGEMAKER_TS_BATCH_SIZE",
    "SAGEMAKER_TS_MAX_BATCH_DELAY",
    "SAGEMAKER_TS_MIN_WORKERS",
    "SAGEMAKER_TS_MAX_WORKERS",
    "SAGEMAKER_TS_RESPONSE_TIMEOUT",
)
