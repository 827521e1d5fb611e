"""`moorage serve`: the whole service on one machine: control plane, runtime, S3 store, workers.

Start-up order matters for "ready in about a second": the command takes the data dir's lock, then
launches the fork server (before this module's imports), which imports torch in the background; the
ports open (the server answers at once), and stored endpoints are brought back by the reconciler
without blocking the control plane. Shutdown is the reverse: stop accepting, let requests in
progress finish within the grace period, stop the workers, close the store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from moorage import __version__, sandbox
from moorage.api.app import MainApp
from moorage.api.auth import S3Auth, SageMakerAuth
from moorage.api.cloudwatch import TARGET_PREFIX as CLOUDWATCH_TARGET_PREFIX
from moorage.api.cloudwatch import CloudWatchApi
from moorage.api.control import ControlPlane
from moorage.api.iam import IamApi
from moorage.api.logs import TARGET_PREFIX as LOGS_TARGET_PREFIX
from moorage.api.logs import LogsApi
from moorage.api.runtime import RuntimeApi
from moorage.asyncinf.service import open_async
from moorage.backends.base import Backend
from moorage.capture.service import open_capture
from moorage.cloudwatch.service import open_cloudwatch
from moorage.console import ConsoleSite, console_enabled
from moorage.control import autoscaling
from moorage.control.arns import ControlContext
from moorage.control.autoscaler import Autoscaler
from moorage.control.reconciler import Reconciler
from moorage.control.store import Store
from moorage.credentials import Keyring, credentials_path, require_keys
from moorage.httpd import HttpServer
from moorage.httpd.hosts import BrowserGuard
from moorage.logs import LogRotator, LogsContext, LogsLayout
from moorage.runtime.metrics import Metrics
from moorage.runtime.router import Router
from moorage.runtime.shadow import ShadowMirror
from moorage.settings import Settings
from moorage.transform.service import open_transform

if TYPE_CHECKING:
    from moorage.backends.local import ForkServer

__all__ = ["make_backend", "serve", "server_info"]

log = logging.getLogger("moorage.serve")

SERVER_INFO = "server.json"


def make_backend(
    settings: Settings, environ: Mapping[str, str], forkserver: ForkServer | None = None
) -> Backend:
    """The configured backend; Ray is imported only when it is the one chosen.

    `forkserver`: the local backend's fork server, when the command launched it early.
    """
    if settings.backend == "ray":
        from moorage.backends.ray import RayBackend  # type: ignore[import-not-found,unused-ignore]

        backend: Backend = RayBackend(settings, environ)
        return backend
    from moorage.backends.local import LocalBackend

    return LocalBackend(settings, environ, forkserver)


def server_info(data_dir: Path) -> dict[str, object] | None:
    """What a running server wrote about itself (URLs, pid), or None when none runs on this data dir."""
    try:
        info: dict[str, object] = json.loads((data_dir / SERVER_INFO).read_text())
    except (OSError, ValueError):
        return None
    return info


async def serve(
    settings: Settings,
    environ: Mapping[str, str],
    stop: asyncio.Event,
    forkserver: ForkServer | None = None,
) -> None:
    """Run until `stop`; the caller holds the data dir's lock (`launch.lock`), taken before anything."""
    if settings.auth == "sigv4":
        require_keys(settings.data_dir)  # else no client could sign a request: refuse to start
    await _serve(settings, environ, stop, forkserver)


async def _serve(
    settings: Settings, environ: Mapping[str, str], stop: asyncio.Event, forkserver: ForkServer | None
) -> None:
    info_path = settings.data_dir / SERVER_INFO
    info_path.unlink(missing_ok=True)
    # What a deployed model's code can reach, said first (docs/security.md).
    sandbox_info = sandbox.at_start(
        settings.workers.sandbox, log, settings.backend, settings.workers.sandbox_writable
    )
    store_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
    store = await asyncio.get_running_loop().run_in_executor(store_executor, Store, settings.db_path)
    backend = make_backend(settings, environ, forkserver)
    router = Router(settings.account_id)
    metrics = Metrics()
    # CloudWatch: the metric history (sampled from `metrics`) and the alarms evaluated over it; guardrails
    # read alarm states through `cloudwatch.states` / `cloudwatch.subscribe`.
    cloudwatch = await open_cloudwatch(settings, metrics)
    cloudwatch_api = CloudWatchApi(cloudwatch.context, cloudwatch.run)
    # --auth sigv4: both ports check every request against the keys of `moorage credentials`.
    keyring = Keyring(credentials_path(settings.data_dir)) if settings.auth == "sigv4" else None
    # Both ports refuse foreign Host names and, without auth, cross-site browser requests.
    guard = BrowserGuard.for_server(settings.host, settings.server_names, auth_on=keyring is not None)
    s3_server: HttpServer | None = None
    if settings.s3_port is not None:
        from moorage.s3 import build_s3_app

        s3_server = HttpServer(
            build_s3_app(
                settings.s3_dir,
                region=settings.region,
                authenticate=S3Auth(keyring, region=settings.region) if keyring is not None else None,
                guard=guard,
            ),
            settings.host,
            settings.s3_port,
            settings.http,
        )
        await s3_server.start()
    external_s3 = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL")
    # The embedded store is read and written from disk unless clients were pointed at another S3.
    s3_local_root = None if external_s3 or s3_server is None else settings.s3_dir
    reconciler = Reconciler(
        store=store,
        store_executor=store_executor,
        router=router,
        backend=backend,
        settings=settings,
        metrics=metrics,
        s3_local_root=s3_local_root,
        alarms=cloudwatch,  # guarded updates roll back when one of their alarms goes to ALARM
    )
    control = ControlPlane(
        store,
        ControlContext(
            region=settings.region,
            account_id=settings.account_id,
            artifact_policy=settings.artifacts,
            model_deleted=reconciler.model_deleted,
            backend=settings.backend,
        ),
        reconciler,
        store_executor,
    )
    # Batch transform's operations on the same control plane; its runner starts jobs' own instances.
    transform = await open_transform(
        settings,
        control.ctx,
        store_executor=store_executor,
        backend=backend,
        s3_local_root=s3_local_root,
        external_s3=external_s3,
        metrics=metrics,
    )
    control.operations.update(transform.operations)
    # Async inference's queue (its own SQLite file) and dispatcher, over the same router and pools.
    asyncinf = await open_async(
        settings,
        environ,
        control_store=store,
        control_executor=store_executor,
        router=router,
        metrics=metrics,
        s3_local_root=s3_local_root,
        external_s3=external_s3,
    )
    # Data capture: sampled invocations written to S3 (the embedded store or the external one) off the
    # request path.
    capture = open_capture(
        settings,
        control_store=store,
        control_executor=store_executor,
        router=router,
        metrics=metrics,
        s3_local_root=s3_local_root,
        external_s3=external_s3,
    )
    # Shadow variants: sampled requests copied to the shadow, off the caller's path (runtime/shadow.py).
    shadow = ShadowMirror(router, metrics, capture, settings.shadow_max_outstanding)
    # Application Auto Scaling's API on the same port, over the same store; the autoscaler acts on it.
    scaling = ControlPlane(
        store,
        control.ctx,
        reconciler,
        store_executor,
        operations=autoscaling.OPERATIONS,
        target_prefix=autoscaling.TARGET_PREFIX,
    )
    autoscaler = Autoscaler(
        store=store,
        store_executor=store_executor,
        ctx=control.ctx,
        metrics=metrics,
        endpoint_changed=reconciler.endpoint_changed,
        period_s=settings.autoscale_period_s,
        backlogs=asyncinf.dispatcher.backlogs,  # async scale to zero (serverless/backlog.py)
    )
    rotator = LogRotator(settings.logs_dir, settings.log_max_bytes)
    logs = LogsApi(
        LogsContext(LogsLayout(settings.logs_dir), rotator.lock, settings.region, settings.account_id)
    )
    json_services = {
        "SageMaker": control.handle,
        LOGS_TARGET_PREFIX: logs.handle,
        CLOUDWATCH_TARGET_PREFIX: cloudwatch_api.handle,  # AWS JSON 1.0 clients
        autoscaling.TARGET_PREFIX.rstrip("."): scaling.handle,
    }
    # What /_moorage/info tells clients (the SDK): the S3 endpoint this server reads s3:// model data from.
    client_info = {
        "version": __version__,
        "s3_url": external_s3 or (s3_server and f"http://{settings.host}:{s3_server.port}"),
        "region": settings.region,
        "account_id": settings.account_id,
        "sandbox": sandbox_info,
    }
    app = MainApp(
        json_services,
        RuntimeApi(router, metrics, settings.region, settings.account_id, capture, shadow),
        metrics,
        authenticate=None
        if keyring is None
        else SageMakerAuth(
            keyring,
            region=settings.region,
            account_id=settings.account_id,
            # Signing names of the APIs served here.
            services=frozenset({"sagemaker", "logs", "iam", "application-autoscaling", "monitoring"}),
        ),
        query_service=IamApi(settings.account_id).handle,
        info=client_info,
        guard=guard,
        async_runtime=asyncinf.api,
        rpc_services={CLOUDWATCH_TARGET_PREFIX: cloudwatch_api.handle},  # Smithy RPC v2 CBOR clients
        console=ConsoleSite()
        if console_enabled(settings.console, settings.host, auth_on=keyring is not None)
        else None,
    )
    server = HttpServer(app, settings.host, settings.port, settings.http)
    await server.start()
    warm = asyncio.get_running_loop().create_task(backend.start())
    warm.add_done_callback(_report_backend_start)
    rotation = asyncio.get_running_loop().create_task(rotator.run())
    try:
        await reconciler.recover()
        await transform.start()
        await asyncinf.start()
        capture.start()
        autoscaler.start()
        cloudwatch.start()
        url = f"http://{settings.host}:{server.port}"
        info = {
            "pid": os.getpid(),
            "url": url,
            "s3_url": s3_server and f"http://{settings.host}:{s3_server.port}",
            "backend": backend.name,
            "data_dir": str(settings.data_dir),
        }
        info_path.write_text(json.dumps(info))
        log.info(
            "moorage serving on %s (S3 store: %s, backend: %s, data: %s)",
            url,
            info["s3_url"] or "off",
            backend.name,
            settings.data_dir,
        )
        await stop.wait()
        log.info("stopping: finishing requests in progress (up to %.0f s)", settings.workers.drain_grace_s)
    finally:
        info_path.unlink(missing_ok=True)
        await server.shutdown(settings.workers.drain_grace_s)
        await autoscaler.close()
        await cloudwatch.close()
        await transform.close()
        await asyncinf.close(settings.workers.drain_grace_s)
        await shadow.close()
        await capture.close(settings.workers.drain_grace_s)
        await reconciler.close(settings.workers.drain_grace_s)
        if s3_server is not None:
            await s3_server.shutdown(5.0)
        warm.cancel()
        rotation.cancel()
        await backend.close()
        await asyncio.get_running_loop().run_in_executor(store_executor, store.close)
        store_executor.shutdown(wait=True)
        log.info("stopped")


def _report_backend_start(task: asyncio.Task[None]) -> None:
    """The backend warms up in the background; if it cannot start, say so now (endpoints will say why)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("the backend could not start: %s", task.exception())
