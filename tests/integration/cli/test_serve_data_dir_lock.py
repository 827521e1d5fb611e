"""`moorage serve` takes its data dir's lock before anything else (issue 12, item 5).

A second server on a busy data dir must say so at once, before its fork server starts importing torch
for seconds. The proof is a preload module of the test's own (MOORAGE_PRELOAD) that leaves a marker
when the fork server imports it: the refused server never gets that far.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from support.servers import base_environment, start_server, wait_until_gone

pytestmark = pytest.mark.slow


def test_a_second_server_on_a_busy_data_dir_is_refused_before_its_fork_server_starts(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    first = start_server(data)
    try:
        modules, marker = tmp_path / "modules", tmp_path / "preloaded"
        modules.mkdir()
        (modules / "preload_marker.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
        path = os.pathsep.join(filter(None, [str(modules), os.environ.get("PYTHONPATH")]))
        tag = uuid.uuid4().hex
        env = base_environment(tag, {"MOORAGE_PRELOAD": "preload_marker", "PYTHONPATH": path})
        command = [sys.executable, "-m", "moorage", "serve", "--port", "0", "--s3-port", "0"]
        second = subprocess.run(
            [*command, "--data-dir", str(data)], env=env, capture_output=True, timeout=120, check=False
        )
        assert second.returncode != 0
        assert f"Another moorage server is already using the data dir {data}" in second.stderr.decode()
        assert not wait_until_gone(tag)
        assert not marker.exists(), "the refused server started its fork server first"
    finally:
        assert first.stop() == 0
    assert not wait_until_gone(first.tag)
