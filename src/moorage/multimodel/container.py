"""The state behind SageMaker's multi-model container API (`moorage serve-model --multi-model ROOT`).

SageMaker's platform (or a user's own router) drives the container (spec §c.1, "Container contract"):
it loads a model under an opaque name from a `url`, lists, describes and unloads models, and invokes
one by name. Here every `url` must lie under ROOT (a local directory or an S3 prefix) and goes through
the same checks and `artifacts/` path as a TargetModel; each model runs in a worker of its own, as on
`moorage serve`. What to unload is the caller's decision: a load that does not fit answers 507.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from moorage.backends.base import Backend
from moorage.errors import MoorageError, ValidationError
from moorage.multimodel.host import HostContext, ModelHost
from moorage.multimodel.metrics import MultiModelMetrics
from moorage.multimodel.targets import target_url
from moorage.multimodel.variant import memory_budget
from moorage.runtime.instance_types import plan_instance
from moorage.runtime.outcomes import Outcome
from moorage.settings import ContainerConfig, Settings
from moorage.worker.protocol import Invoke

__all__ = ["PAGE_SIZE", "ContainerModels", "ModelConflict", "ModelNotFound", "container_host"]

PAGE_SIZE = 100


class ModelConflict(MoorageError):
    code = "ConflictStatusException"
    status = 409


class ModelNotFound(MoorageError):
    code = "ModelNotFoundException"
    status = 404


@dataclass(frozen=True)
class Registered:
    name: str
    url: str  # as the caller gave it (ListModels and DescribeModel echo it)


class ContainerModels:
    def __init__(self, root: str, host: ModelHost) -> None:
        self.root = root
        self.host = host
        self.registered: dict[str, Registered] = {}

    async def load(self, name: str, url: str) -> None:
        """POST /models: 409 if `name` is loaded; the load's own error (507 when memory is short) else."""
        if not name or "/" in name:
            raise ValidationError(f"model_name {name!r} must be a non-empty name without '/'.")
        if name in self.registered:
            raise ModelConflict(f"Model {name} is already loaded.")
        source = self._source(url)
        await self.host.load(name, source)
        self.registered[name] = Registered(name, url)

    def page(self, token: str | None) -> tuple[list[Registered], str | None]:
        """GET /models: one page in name order, and the token of the next (None on the last)."""
        names = sorted(self.registered)
        start = 0
        if token:
            try:
                start = int(token)
            except ValueError:
                raise ValidationError(f"next_page_token {token!r} is not one this server gave.") from None
        chosen = [self.registered[name] for name in names[start : start + PAGE_SIZE]]
        following = start + PAGE_SIZE
        return chosen, (str(following) if following < len(names) else None)

    def describe(self, name: str) -> Registered:
        self._forget_gone()
        found = self.registered.get(name)
        if found is None:
            raise ModelNotFound(f"Model {name} is not loaded.")
        return found

    async def unload(self, name: str) -> None:
        """DELETE /models/{name}: returns once the model's worker is gone."""
        self.describe(name)
        del self.registered[name]
        model = self.host.models.get(name)
        if model is not None:
            await self.host.unload(model, "DELETE /models")

    async def invoke(self, name: str, message: Invoke) -> Outcome:
        self.describe(name)
        model = self.host.ready(name)
        if model is None:
            raise ModelNotFound(f"Model {name} is not loaded.")
        self.host.begin(model)
        try:
            return await model.pool.submit(message)
        finally:
            self.host.end(model)

    def _forget_gone(self) -> None:
        """A model whose worker died is not loaded any more (the caller loads it again)."""
        for name in [name for name in self.registered if self.host.ready(name) is None]:
            del self.registered[name]

    def _source(self, url: str) -> str:
        """The url under ROOT, as a path relative to it (an absolute path or URL must start inside it)."""
        root = self.root
        if root.startswith("s3://"):
            prefix = root if root.endswith("/") else root + "/"
            relative = url[len(prefix) :] if url.startswith(prefix) else url
            if "://" in relative:
                raise ValidationError(f"url {url!r} is not under {root}.")
            return target_url(root, relative)
        base = Path(root.removeprefix("file://")).resolve()
        path = Path(url.removeprefix("file://"))
        if path.is_absolute():
            try:
                relative = str(path.resolve().relative_to(base))
            except ValueError:
                raise ValidationError(f"url {url!r} is not under {base}.") from None
        else:
            relative = url
        return target_url(str(base), relative)


def container_host(
    root: str,
    environment: dict[str, str],
    backend: Backend,
    settings: Settings,
    log_path: Path,
) -> ContainerModels:
    """The models of `serve-model --multi-model ROOT`: one instance ('local'), its budget from
    MOORAGE_MME_MEMORY_BYTES (else half this machine's memory), nothing unloaded but on request."""
    setup_container = ContainerConfig.from_environment(environment)
    plan = plan_instance("local", setup_container, backend.capacity())
    ctx = HostContext(
        endpoint="model",
        variant="AllTraffic",
        environment=dict(environment),
        container=setup_container,
        cache_enabled=True,
        backend=backend,
        plan=plan,
        workers=settings.workers,
        budget_bytes=memory_budget("local", settings.mme_memory_bytes),
        max_models=settings.mme_max_models,
        cache_dir=settings.cache_dir,
        policy=settings.artifacts,
        s3_local_root=None,
        logs_dir=log_path.parent,
        startup_timeout_s=settings.workers.startup_timeout_s,
        load_timeout_s=settings.mme_load_timeout_s,
        spare_workers=settings.mme_spare_workers,
        metrics=MultiModelMetrics(),
        log_stream_arn="",
        console_link="",
        auto_evict=False,
    )
    host = ModelHost("local", ctx)
    host.log_path = log_path
    return ContainerModels(root, host)
