"""`moorage serve-model`: one model, served on /ping and /invocations as a SageMaker container serves it.

Start-up overlaps its three slow parts: the fork server, launched by the command before this module
is even imported, imports torch while the HTTP port opens (/ping says Unhealthy) and the artifact is
fetched and extracted; then the workers fork and load the model. /ping turns 200 only when every
worker has returned from model_fn.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from moorage import sandbox
from moorage.api.container import ContainerApp
from moorage.api.container_models import ModelsApi
from moorage.api.execution_parameters import BatchParameters
from moorage.artifacts import ModelSource, prepare_model
from moorage.backends.local import ForkServer, LocalBackend
from moorage.errors import MoorageError
from moorage.httpd import HttpServer
from moorage.httpd.hosts import BrowserGuard
from moorage.multimodel.container import container_host
from moorage.runtime.variant import VariantRuntime, VariantSetup
from moorage.settings import Settings

__all__ = ["ServeModelOptions", "container_environment", "serve_model"]

log = logging.getLogger("moorage.serve_model")


@dataclass(frozen=True)
class ServeModelOptions:
    model_data: str
    entry_point: str | None = None
    source_dir: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None  # None: SAGEMAKER_BIND_TO_PORT, else 8080
    workers: int | None = None
    log_file: Path | None = None  # None: the workers' output goes to this process's stderr
    multi_model: bool = False  # model_data is a directory or S3 prefix of models: the /models API


def container_environment(environ: Mapping[str, str], options: ServeModelOptions) -> dict[str, str]:
    """The model's container environment: the SAGEMAKER_* variables of this process, plus the flags."""
    env = {key: value for key, value in environ.items() if key.startswith("SAGEMAKER_")}
    for key in ("OMP_NUM_THREADS", "MOORAGE_TORCH_THREADS"):
        if key in environ:
            env[key] = environ[key]
    if options.entry_point:
        env["SAGEMAKER_PROGRAM"] = os.path.basename(options.entry_point)
    if options.workers:
        env["SAGEMAKER_MODEL_SERVER_WORKERS"] = str(options.workers)
    return env


def _code_source(options: ServeModelOptions, env: Mapping[str, str]) -> str | None:
    if options.source_dir:
        return str(Path(options.source_dir).resolve())
    if options.entry_point:
        return str(Path(options.entry_point).resolve().parent)
    return env.get("SAGEMAKER_SUBMIT_DIRECTORY")


async def serve_model(
    settings: Settings,
    options: ServeModelOptions,
    environ: Mapping[str, str],
    stop: asyncio.Event,
    forkserver: ForkServer | None = None,
) -> None:
    """`forkserver`: the workers' fork server, when the command launched it before importing this."""
    env = container_environment(environ, options)
    port = options.port if options.port is not None else int(environ.get("SAGEMAKER_BIND_TO_PORT", "8080"))
    sandbox.at_start(settings.workers.sandbox, log, writable=settings.workers.sandbox_writable)
    backend = LocalBackend(settings, environ, forkserver)
    batch = BatchParameters.from_environment(env)  # SAGEMAKER_BATCH: a bad value stops us here
    # No authentication on this port: foreign Hosts and cross-site browser requests are refused.
    app = ContainerApp(
        None, BrowserGuard.for_server(options.host, settings.server_names, auth_on=False), batch
    )
    server = HttpServer(app, options.host, port, settings.http)
    await server.start()
    log.info("listening on http://%s:%d (/ping, /invocations)", options.host, server.port)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    info_path = settings.data_dir / "serve-model.json"
    info_path.write_text(json.dumps({"pid": os.getpid(), "url": f"http://{options.host}:{server.port}"}))
    loop = asyncio.get_running_loop()
    warm = loop.create_task(backend.start())
    variant: VariantRuntime | None = None
    try:
        if options.multi_model:  # models arrive by POST /models (moorage.multimodel)
            await warm
            log_path = options.log_file or Path("/dev/stderr")
            models = container_host(options.model_data, env, backend, settings, log_path)
            app.models = ModelsApi(models)
            log.info("multi-model container on %s: POST /models loads a model", options.model_data)
            await stop.wait()
            await models.host.close(settings.workers.drain_grace_s)
            return
        prepared = await loop.run_in_executor(
            None,
            functools.partial(
                prepare_model,
                ModelSource(url=options.model_data),
                submit_directory=_code_source(options, env),
                cache_dir=settings.cache_dir,
                policy=settings.artifacts,
                log=lambda line: log.info("%s", line),
            ),
        )
        await warm
        variant = VariantRuntime(
            VariantSetup(
                endpoint="model",
                variant="AllTraffic",
                prepared=prepared,
                environment=env,
                instance_type="local",
                instance_count=1,
                logs_dir=settings.logs_dir,
                startup_timeout_s=settings.workers.startup_timeout_s,
                log_path=options.log_file or Path("/dev/stderr"),
            ),
            backend,
            settings.workers,
        )
        app.variant = variant
        await variant.start()
        log.info("model ready: %d worker(s) on http://%s:%d", variant.plan.workers, options.host, server.port)
        await stop.wait()
        log.info("stopping: finishing requests in progress (up to %.0f s)", settings.workers.drain_grace_s)
    except MoorageError as exc:
        log.error("%s", exc.message)
        raise
    finally:
        info_path.unlink(missing_ok=True)
        await server.shutdown(settings.workers.drain_grace_s)
        if variant is not None:
            await variant.stop(settings.workers.drain_grace_s)
        warm.cancel()
        await backend.close()
