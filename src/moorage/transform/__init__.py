"""Batch transform: SageMaker's CreateTransformJob over an S3 prefix or a manifest (spec §c.2).

`operations` serves the control plane (Create/Describe/List/StopTransformJob), `store` keeps the jobs
and each input object's progress in the server's SQLite file, and `runner` drives InProgress jobs:
it reads every input object streamed, splits and packs its records (`records`), sends them through
the same worker pools as real-time calls, and publishes one `<name>.out` per object that succeeded.
"""
