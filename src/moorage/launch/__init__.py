"""Assemble and run the processes behind `moorage serve` and `moorage serve-model`.

The CLI parses flags into Settings and calls one function here; everything long-running (event loop,
signals, graceful stop) is arranged in this package, so cli.py stays a thin layer.
"""
