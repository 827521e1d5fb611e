"""A production variant of a multi-model endpoint: instances that load models on demand, and routing to them.

It is a VariantRuntime to the reconciler (started, scaled, stopped, counted like any variant), but its
instances start empty: `invoke` routes each call to an instance that has its TargetModel loaded (the
least busy copy), else to one loading it, else to the instance with the most room, which loads it.
A model with MOORAGE_MME_SPREAD_AFTER calls in flight on every copy is loaded on one more instance.
A call that waits longer than MOORAGE_MME_READY_WAIT (SageMaker: 60 s) for its model gets
ModelNotReadyException (429) while the load goes on for the next call.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil

from moorage.artifacts import PreparedModel
from moorage.backends.base import Backend
from moorage.control.records import VariantSpec
from moorage.errors import DeploymentError, ModelNotReadyException
from moorage.multimodel.host import HostContext, LoadedModel, ModelHost
from moorage.multimodel.metrics import LoadedInfo, metrics_for
from moorage.multimodel.targets import target_url
from moorage.runtime.instance_types import profile_for
from moorage.runtime.metrics import Metrics
from moorage.runtime.outcomes import Outcome
from moorage.runtime.variant import VariantRuntime, VariantSetup
from moorage.settings import Settings
from moorage.worker.protocol import Invoke

__all__ = ["LoadedInfo", "MultiModelVariant", "memory_budget", "start_multi_model"]

log = logging.getLogger("moorage.multimodel")

_GIB = 1024**3


def memory_budget(instance_type: str, override: int | None) -> int:
    """Bytes one instance keeps for loaded models: the override, else 90% of the type's memory (half this
    machine's for types without one, such as 'local')."""
    if override is not None:
        return override
    memory_gib = profile_for(instance_type).memory_gib
    if memory_gib is None:
        return int(psutil.virtual_memory().total / 2)
    return int(memory_gib * _GIB * 0.9)


class MultiModelVariant(VariantRuntime):
    def __init__(
        self,
        setup: VariantSetup,
        backend: Backend,
        settings: Settings,
        *,
        prefix: str,
        cache_enabled: bool,
        metrics: Metrics,
        s3_local_root: Path | None,
    ) -> None:
        super().__init__(setup, backend, settings.workers)
        self.prefix = prefix
        self.hosts: list[ModelHost] = []
        self.mme_metrics = metrics_for(metrics)
        log_group = f"/aws/sagemaker/Endpoints/{setup.endpoint}"
        region, account = settings.region, settings.account_id
        self._ready_wait_s = settings.mme_ready_wait_s
        self._spread_after = settings.mme_spread_after
        self.ctx = HostContext(
            endpoint=setup.endpoint,
            variant=setup.variant,
            environment=dict(setup.environment),
            container=setup.container,
            cache_enabled=cache_enabled,
            backend=backend,
            plan=self.plan,
            workers=settings.workers,
            budget_bytes=memory_budget(setup.instance_type, settings.mme_memory_bytes),
            max_models=settings.mme_max_models,
            cache_dir=settings.cache_dir,
            policy=settings.artifacts,
            s3_local_root=s3_local_root,
            logs_dir=setup.logs_dir,
            startup_timeout_s=setup.startup_timeout_s,
            load_timeout_s=settings.mme_load_timeout_s,
            spare_workers=settings.mme_spare_workers,
            metrics=self.mme_metrics,
            log_stream_arn=f"arn:aws:logs:{region}:{account}:log-group:{log_group}",
            console_link=(
                f"See https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
                f"#logEventViewer:group={log_group} in account {account} for more information."
            ),
        )

    # What the reconciler sees ---------------------------------------------------------------------
    @property
    def ready_instances(self) -> int:
        return len(self.hosts)

    @property
    def start_failure(self) -> str | None:
        return None

    @property
    def healthy(self) -> bool:
        return self.started and bool(self.hosts)

    async def start(self) -> None:
        await self.scale_to(self.setup.instance_count)
        self.started = True
        self.mme_metrics.track(self.setup.endpoint, self.setup.variant, self)

    async def scale_to(self, count: int) -> None:
        while len(self.hosts) < count:
            self.hosts.append(ModelHost(f"i-{uuid.uuid4().hex[:17]}", self.ctx))
        retired, self.hosts = self.hosts[count:], self.hosts[:count]
        await asyncio.gather(*(host.close(self.workers.drain_grace_s) for host in retired))
        self.on_change()

    async def stop(
        self, grace_s: float, reason: str = "The endpoint stopped serving this variant; retry the request."
    ) -> None:
        self.mme_metrics.track(self.setup.endpoint, self.setup.variant, None)
        hosts, self.hosts = self.hosts, []
        await asyncio.gather(*(host.close(grace_s) for host in hosts))
        self.pool.stop_accepting()
        self.pool.abandon(reason)

    # Calls ----------------------------------------------------------------------------------------
    async def invoke(self, target: str, message: Invoke) -> Outcome:
        """Route one call to a copy of `target`, loading it first when no instance has it."""
        url = target_url(self.prefix, target)
        started = time.monotonic()
        waited = False
        while True:
            if not self.hosts:
                raise ModelNotReadyException(
                    f"No instance of production variant {self.name} is serving yet; retry the request."
                )
            host, model = self._route(target, url)
            if model is not None:
                break
            waited = True
            remaining = started + self._ready_wait_s - time.monotonic()
            task = host.load(target, url)
            try:
                await asyncio.wait_for(asyncio.shield(task), max(0.0, remaining))
            except TimeoutError:
                raise ModelNotReadyException(
                    f"Model {target} is not loaded yet: it has been loading for more than "
                    f"{self._ready_wait_s:g} s and goes on loading; retry the request."
                ) from None
        metrics, endpoint, variant = self.mme_metrics, self.setup.endpoint, self.setup.variant
        metrics.cache(endpoint, variant, not waited)
        if waited:
            metrics.observe(endpoint, variant, "ModelLoadingWaitTime", time.monotonic() - started)
        host.begin(model)
        try:
            return await model.pool.submit(message)
        finally:
            host.end(model)

    def _spread(self, target: str, url: str, holding: set[ModelHost]) -> None:
        """Every copy of `target` has MOORAGE_MME_SPREAD_AFTER calls in flight: load it on the instance
        with the most room that lacks it, in the background (this call still goes to a loaded copy)."""
        others = [host for host in self.hosts if host not in holding]
        if not others:
            return
        host = min(others, key=lambda other: (other.used_bytes, len(other.models)))
        log.info(
            "%s/%s: %s has at least %d calls in flight on each copy; loading it on %s too",
            self.setup.endpoint,
            self.setup.variant,
            target,
            self._spread_after,
            host.instance_id,
        )
        host.load(target, url)

    def _route(self, target: str, url: str) -> tuple[ModelHost, LoadedModel | None]:
        copies = [(host, model) for host in self.hosts if (model := host.ready(target)) is not None]
        loading = [host for host in self.hosts if target in host.loading]
        if copies:
            best = min(copies, key=lambda pair: pair[1].in_flight)
            if 0 < self._spread_after <= best[1].in_flight and not loading:
                self._spread(target, url, {host for host, _ in copies})
            return best
        if loading:
            return loading[0], None
        return min(self.hosts, key=lambda host: (host.used_bytes, len(host.models))), None

    # Reporting ------------------------------------------------------------------------------------
    def loaded_counts(self) -> dict[str, int]:
        return {host.instance_id: len(host.models) for host in self.hosts}

    def spare_counts(self) -> dict[str, int]:
        return {host.instance_id: host.spares_ready for host in self.hosts}

    def loaded(self) -> list[LoadedInfo]:
        return [
            LoadedInfo(
                instance_id=host.instance_id,
                target=model.target,
                size_bytes=model.size_bytes,
                download_s=model.download_s,
                load_s=model.load_s,
                loaded_at=model.loaded_at,
                in_flight=model.in_flight,
            )
            for host in self.hosts
            for model in host.models.values()
        ]


def placeholder_model(prefix: str) -> PreparedModel:
    """What VariantSetup.prepared holds for a multi-model variant: nothing is prepared up front (each
    model is, on its first call), so there is no tree and no lease to release."""
    return PreparedModel(
        model_dir=Path("/nonexistent"), code_dir=None, deps_dir=None, digest=f"prefix:{prefix}"
    )


async def start_multi_model(
    endpoint: str,
    spec: VariantSpec,
    backend: Backend,
    settings: Settings,
    metrics: Metrics,
    s3_local_root: Path | None,
    on_change: Callable[[], None],
) -> MultiModelVariant:
    """The reconciler's start of a variant whose model has Mode MultiModel: instances with nothing loaded."""
    if getattr(spec, "serverless", None):
        raise DeploymentError(
            f"Production variant {spec.variant_name}: a serverless variant cannot serve a multi-model "
            "endpoint (as in SageMaker); give the variant InstanceType and InitialInstanceCount."
        )
    prefix = spec.container.model_data_url or ""
    await backend.start()
    runtime = MultiModelVariant(
        VariantSetup(
            endpoint=endpoint,
            variant=spec.variant_name,
            prepared=placeholder_model(prefix),
            environment=dict(spec.container.environment),
            instance_type=spec.instance_type,
            instance_count=spec.instance_count,
            logs_dir=settings.logs_dir,
            startup_timeout_s=spec.startup_timeout_s or settings.workers.startup_timeout_s,
        ),
        backend,
        settings,
        prefix=prefix,
        cache_enabled=spec.container.model_cache != "Disabled",
        metrics=metrics,
        s3_local_root=s3_local_root,
    )
    runtime.on_change = on_change
    await runtime.start()
    return runtime
