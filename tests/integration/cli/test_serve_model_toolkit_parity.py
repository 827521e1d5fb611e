"""`moorage serve-model` against two behaviours of SageMaker's PyTorch stack that are easy to miss.

With SAGEMAKER_MODEL_SERVER_WORKERS=2 and a SAGEMAKER_TS_* variable set, the toolkit's per-model
TorchServe setting runs one worker (SAGEMAKER_TS_MIN_WORKERS, else 1); and text sent as CSV (a header
line) or as a JSON list of strings to the default handlers fails with 500 in the toolkit's words.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from integration.reliability.rig import worker_pids
from support.servers import post, start_model_server, wait_until_gone

pytestmark = pytest.mark.slow

TOOLKIT_PREFIX = "can't convert np.ndarray of type numpy.str_. The only supported types are: "


def test_ts_settings_run_one_worker_and_text_fails_with_the_toolkits_words(
    tmp_path: Path, artifacts: Any
) -> None:
    server = start_model_server(
        artifacts.tiny_tar,
        tmp_path / "data",
        env={"SAGEMAKER_MODEL_SERVER_WORKERS": "2", "SAGEMAKER_TS_MAX_BATCH_DELAY": "100"},
    )
    try:
        assert len(worker_pids(server)) == 1
        for body, content_type in ((b"name,size\n1,2\n", "text/csv"), (b'["a", "b"]', "application/json")):
            status, _, answer, reason = post(
                server.url + "/invocations", body, {"Content-Type": content_type}
            )
            assert status == 500, answer
            assert answer.decode().startswith(TOOLKIT_PREFIX)
            assert reason.startswith(TOOLKIT_PREFIX)
    finally:
        assert server.stop() == 0
    assert not wait_until_gone(server.tag)
