"""The batch contract's variables, read once at start: defaults, normalisation, refusals naming them."""

from __future__ import annotations

import pytest

from moorage.api.execution_parameters import BatchParameters, request_cap
from moorage.errors import ConfigError
from moorage.settings import MAX_PAYLOAD_BYTES


def test_out_of_batch_mode_there_are_none_and_the_cap_is_realtime() -> None:
    assert BatchParameters.from_environment({}) is None
    assert (
        BatchParameters.from_environment({"SAGEMAKER_BATCH": "false", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "9"})
        is None
    )
    assert request_cap(None) == MAX_PAYLOAD_BYTES


def test_defaults_and_explicit_values() -> None:
    default = BatchParameters.from_environment({"SAGEMAKER_BATCH": "True"})  # local mode sends "True"
    assert default is not None
    assert default.answer(workers=3) == {
        "MaxConcurrentTransforms": 3,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": 6,
    }
    assert request_cap(default) == 6 * 1024 * 1024
    given = BatchParameters.from_environment(
        {
            "SAGEMAKER_BATCH": "true",
            "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "4",
            "SAGEMAKER_BATCH_STRATEGY": "single_record",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "60",
        }
    )
    assert given is not None
    assert given.answer(workers=1) == {
        "MaxConcurrentTransforms": 4,
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": 60,
    }
    assert request_cap(given) == 60 * 1024 * 1024


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "61", "SAGEMAKER_MAX_PAYLOAD_IN_MB=61 is out of range; give 1 to 60"),
        ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "0", "SAGEMAKER_MAX_PAYLOAD_IN_MB=0 is out of range; give 1 to 60."),
        ("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", "0", "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS=0 is out of range"),
        ("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS", "2.5", "'2.5' is not a whole number; give at least 1."),
        ("SAGEMAKER_BATCH_STRATEGY", "ALL", "SAGEMAKER_BATCH_STRATEGY='ALL' is not one of MULTI_RECORD"),
    ],
)
def test_a_bad_value_is_refused_by_name(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        BatchParameters.from_environment({"SAGEMAKER_BATCH": "true", name: value})
    assert message in raised.value.message
