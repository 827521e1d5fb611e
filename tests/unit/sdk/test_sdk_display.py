"""How `deploy` shows progress (issue 19): the caller's function, a bar, or nothing; and the reprs."""

from __future__ import annotations

from typing import Any

import pytest

from moorage.sdk import JSONDeserializer, JSONSerializer, Predictor, PyTorchPredictor
from moorage.sdk.display import deploy_display


def described(status: str, current: int, desired: int) -> dict[str, Any]:
    variant = {"VariantName": "AllTraffic", "CurrentInstanceCount": current, "DesiredInstanceCount": desired}
    return {"EndpointName": "seed", "EndpointStatus": status, "ProductionVariants": [variant]}


def test_a_function_hears_each_step_and_no_bar_is_drawn(capsys: pytest.CaptureFixture[str]) -> None:
    heard: list[str] = []
    with deploy_display(heard.append) as display:
        display.say("Creating model m")
    assert heard == ["Creating model m"] and display.watch is None
    assert capsys.readouterr() == ("", "")


def test_by_default_a_script_stays_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    # Under pytest, stderr is not a terminal and no Jupyter kernel runs: what a script or a log sees.
    with deploy_display(None) as display:
        display.say("Creating model m")
    assert display.watch is None
    assert capsys.readouterr() == ("", "")


def test_a_bar_counts_instances_in_service_and_names_the_status(capsys: pytest.CaptureFixture[str]) -> None:
    with deploy_display(True) as display:
        display.say("Uploading s3://b/k")
        assert display.watch is not None
        display.watch(described("Creating", 0, 2))
        display.watch(described("Creating", 1, 2))
        display.watch(described("InService", 2, 2))
    drawn = capsys.readouterr().err.split("\r")[-1]
    assert "Endpoint seed: InService" in drawn
    assert "2/2" in drawn


def test_false_draws_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with deploy_display(False) as display:
        display.say("Creating model m")
    assert capsys.readouterr() == ("", "")


def test_a_predictor_says_which_endpoint_server_and_content_types() -> None:
    predictor = Predictor(
        "seed",
        endpoint_url="http://127.0.0.1:8080",
        serializer=JSONSerializer(),
        deserializer=JSONDeserializer(),
    )
    assert repr(predictor) == (
        "Predictor('seed', server='http://127.0.0.1:8080', content_type='application/json', "
        "accept='application/json')"
    )
    assert repr(PyTorchPredictor("seed", endpoint_url="http://127.0.0.1:8080")).endswith(
        "content_type='application/x-npy', accept='application/x-npy')"
    )
