"""The last differences from SageMaker's PyTorch stack (issue 12, item 4), pinned in pure logic.

- Any SAGEMAKER_TS_* variable makes the toolkit write a per-model TorchServe setting: its workers are
  SAGEMAKER_TS_MIN_WORKERS (else 1) and its response timeout SAGEMAKER_TS_RESPONSE_TIMEOUT (else 60 s),
  whatever SAGEMAKER_MODEL_SERVER_WORKERS / _TIMEOUT say (torchserve.py, ts_environment.py).
- Text reaching the default input_fn as CSV or JSON fails with torch's own words, as the toolkit's
  torch.FloatTensor(array) does: "can't convert np.ndarray of type numpy.str_. ...".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from moorage.backends.base import PlacementProfile
from moorage.handler.defaults import DefaultHandlers
from moorage.runtime.instance_types import plan_instance
from moorage.settings import ContainerConfig, Settings

TOOLKIT_PREFIX = "can't convert np.ndarray of type numpy.{kind}. The only supported types are: "


@pytest.mark.parametrize(
    "ts_variable", ["SAGEMAKER_TS_MAX_BATCH_DELAY", "SAGEMAKER_TS_BATCH_SIZE", "SAGEMAKER_TS_MAX_WORKERS"]
)
def test_any_ts_variable_means_one_worker_and_a_60_s_timeout(ts_variable: str) -> None:
    config = ContainerConfig.from_environment(
        {
            "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "300",
            ts_variable: "100" if ts_variable.endswith("DELAY") else "1",
        }
    )
    assert (config.workers, config.timeout_s) == (1, 60.0)
    assert config.ts_model_settings == (ts_variable,)
    assert config.superseded == ("SAGEMAKER_MODEL_SERVER_WORKERS=2", "SAGEMAKER_MODEL_SERVER_TIMEOUT=300")
    machine = PlacementProfile(cpus=8, memory_bytes=None)
    assert plan_instance("ml.m5.xlarge", config, machine).workers == 1  # not 2, nor one per vCPU


def test_ts_min_workers_and_response_timeout_set_the_per_model_values() -> None:
    config = ContainerConfig.from_environment(
        {
            "SAGEMAKER_MODEL_SERVER_WORKERS": "4",
            "SAGEMAKER_TS_MIN_WORKERS": "3",
            "SAGEMAKER_TS_RESPONSE_TIMEOUT": "7",
        }
    )
    assert (config.workers, config.timeout_s) == (3, 7.0)


def test_without_ts_variables_the_model_server_variables_apply() -> None:
    config = ContainerConfig.from_environment(
        {"SAGEMAKER_MODEL_SERVER_WORKERS": "2", "SAGEMAKER_MODEL_SERVER_TIMEOUT": "300"}
    )
    assert (config.workers, config.timeout_s) == (2, 300.0)
    assert config.ts_model_settings == () and config.superseded == ()


@pytest.mark.parametrize(
    ("body", "content_type", "kind"),
    [
        ("name,size\n1,2\n", "text/csv", "str_"),  # a CSV header line
        ('["a", "b"]', "application/json", "str_"),  # a JSON list of strings
        ('[[1, "a"]]', "application/json", "str_"),
        ("name,1\nb,2\n", "text/csv", "void"),  # a text column beside a number column: records
    ],
)
def test_text_input_fails_with_the_toolkits_words(body: str, content_type: str, kind: str) -> None:
    with pytest.raises(TypeError) as caught:
        DefaultHandlers().input_fn(body, content_type)
    assert str(caught.value).startswith(TOOLKIT_PREFIX.format(kind=kind))
    # The list is this torch's own (it depends on the version), exactly as the toolkit would show it.
    with pytest.raises(TypeError) as toolkit:
        torch.FloatTensor(np.array(["a"]))
    assert (
        str(caught.value).split("supported types are: ")[1]
        == str(toolkit.value).split("supported types are: ")[1]
    )


def test_numbers_still_decode_after_the_text_check() -> None:
    tensor = DefaultHandlers().input_fn("1,2\n3,4.5\n", "text/csv")
    assert tensor.dtype == torch.float32 and tensor.tolist() == [[1.0, 2.0], [3.0, 4.5]]


def test_a_relative_data_dir_is_made_absolute_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers run in their model dir: a relative data dir would name another place there."""
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_environ({}, data_dir="demo-data/server")
    assert settings.data_dir == tmp_path / "demo-data" / "server"
    assert settings.cache_dir.is_absolute() and settings.logs_dir.is_absolute()
    assert Settings.from_environ({"MOORAGE_DATA_DIR": "elsewhere/../data"}).data_dir == tmp_path / "data"
