"""SageMaker's PyTorch handler contract: user module loading, defaults, codecs, the pipeline.

No HTTP, no asyncio, no sqlite3: this runs inside a worker process and is tested in-process.
"""
