"""Multi-model endpoints: many model archives under one ModelDataUrl prefix, loaded on demand.

SageMaker's `Mode: MultiModel` contract (spec sagemaker-beyond-realtime.md §c.1): InvokeEndpoint names
the archive with `TargetModel`, a path relative to the prefix; the first call fetches, verifies and
extracts it through the same `artifacts/` path as a single model, loads it in a worker of its own, and
answers; later calls go straight to that worker. Each instance keeps its loaded models under a memory
budget (least recently used idle ones are unloaded first), the extracted trees stay under the disk
cache's budget (`artifacts/trees.py`), and `ModelCacheSetting: Disabled` unloads after every call.

Modules: `config` (the control plane's checks), `targets` (TargetModel → one archive's URL),
`host` (one instance's loaded models and budgets), `variant` (a production variant of such models),
`metrics` (SageMaker's MME metric names in /metrics), `memory` (what one model's worker holds, read
where it runs: by the server locally, by the Ray actor itself on its node).
"""
