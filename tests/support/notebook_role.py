"""The SageMaker SDK's notebook metadata file, for tests that need `get_execution_role()` offline.

The SDK reads a fixed path (/opt/ml/metadata/resource-metadata.json), so a test cannot point it at a
temporary one. `metadata_file_slot` lets a test create it only where there is none (it skips when a
file is there: it may be a real notebook instance's) and removes, even when the test fails, exactly
what was created: the file and the directories that did not exist before.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from moorage.sdk.notebook_role import NOTEBOOK_METADATA_FILE, NotebookRole


@contextlib.contextmanager
def metadata_file_slot(path: Path = NOTEBOOK_METADATA_FILE) -> Iterator[Path]:
    if path.exists():
        pytest.skip(f"{path} exists already; the test never touches a metadata file it did not create")
    missing = [directory for directory in path.parents if not directory.exists()]
    nearest = next(directory for directory in path.parents if directory.exists())
    if not os.access(nearest, os.W_OK):
        pytest.skip(f"this user cannot create {path} (no write access to {nearest})")
    try:
        yield path
    finally:  # an OSError here (a directory not empty) means someone else uses it: the test says so
        NotebookRole(path, "", tuple(missing)).undo()
