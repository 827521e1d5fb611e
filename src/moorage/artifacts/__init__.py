"""Model data URL → a verified, extracted model directory, cached by content.

Plain blocking code, so that it runs the same in the server's threads and inside a Ray actor.
No torch, no HTTP server.
"""

from moorage.artifacts.prepare import ModelSource, PreparedModel, ProgressCallback, prepare_model

__all__ = ["ModelSource", "PreparedModel", "ProgressCallback", "prepare_model"]
