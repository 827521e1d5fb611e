"""The post as a Jupyter notebook (issue 19): examples/seed.ipynb, executed by a real kernel.

A Python 3 kernel (ipykernel, started by nbclient as Jupyter starts it) runs every cell of
examples/seed.ipynb against a real `moorage serve`: the one set-up cell (`moorage.configure(...)`),
the local build of the post's artifacts, the post's own cell (`get_execution_role()`, then the
unchanged SageMaker SDK's `PyTorchModel(...).deploy(...)`), the prediction and the clean-up. The
kernel is given only MOORAGE_URL and a HOME; everything else comes from the set-up cell. The
prediction cell's output must be the handler's own answer for the same weights and image. One run
takes a minute and a half or more: the SDK sleeps 30 s before it first asks for the endpoint's status.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from support.cli import isolated_environment
from support.notebook_role import metadata_file_slot
from support.seed import seed_answer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

NOTEBOOK = Path(__file__).resolve().parents[3] / "examples" / "seed.ipynb"
FAST = {"Delay": 0.25, "MaxAttempts": 400}


@pytest.fixture
def metadata_file() -> Iterator[Path]:
    """The set-up cell writes the SDK's metadata file: only where none exists, removed afterwards."""
    with metadata_file_slot() as path:
        yield path


def cell_output(notebook: Any, marker: str) -> str:
    """The text/plain result of the one code cell whose source contains `marker`."""
    (cell,) = [c for c in notebook.cells if c.cell_type == "code" and marker in c.source]
    results = [o for o in cell.outputs if o.output_type == "execute_result"]
    assert len(results) == 1, cell.outputs
    return str(results[0]["data"]["text/plain"])


def test_the_seed_notebook_runs_in_a_real_kernel(
    embedded: Any, artifacts: Any, image_server: str, metadata_file: Path, tmp_path: Path
) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    env = isolated_environment(home, {"MOORAGE_URL": embedded.server.url})
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        env.pop(name)  # the set-up cell provides them
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=540, resources={"metadata": {"path": str(work)}}
    )
    try:
        client.execute(env=env)
    finally:
        nbformat.write(notebook, tmp_path / "seed.executed.ipynb")  # type: ignore[no-untyped-call]

    setup = cell_output(notebook, "moorage.configure(")
    assert f"moorage server {embedded.server.url} (from MOORAGE_URL)" in setup
    assert "get_execution_role() → arn:aws:iam::000000000000:role/SageMakerRole" in setup
    assert (
        json.loads(metadata_file.read_text())["ExecutionRoleArn"]
        == "arn:aws:iam::000000000000:role/SageMakerRole"
    )

    # The notebook's image is the test image, byte for byte; the expected answer is its handler's own.
    assert (work / "images" / "predict.png").read_bytes() == artifacts.image_png.read_bytes()
    expected = seed_answer(work / "seed", json.dumps({"url": f"{image_server}/predict.png"}))
    answer = ast.literal_eval(cell_output(notebook, "predictor.predict("))
    assert [entry["prediction"] for entry in answer] == [entry["prediction"] for entry in expected]
    assert [entry["score"].endswith("%") for entry in answer] == [True, True, True]

    # The clean-up cell deleted what the notebook made, through the SDK.
    sm = embedded.server.client("sagemaker")
    for endpoint in sm.list_endpoints()["Endpoints"]:  # at most one, Deleting
        sm.get_waiter("endpoint_deleted").wait(EndpointName=endpoint["EndpointName"], WaiterConfig=FAST)
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_models()["Models"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []


WIDGET_CELL = """
from moorage.sdk.display import deploy_display

variant = {"VariantName": "AllTraffic", "CurrentInstanceCount": 1, "DesiredInstanceCount": 1}
with deploy_display(None) as display:
    display.say("Creating model m")
    display.watch({"EndpointName": "e", "EndpointStatus": "InService", "ProductionVariants": [variant]})
"""


def test_in_a_kernel_deploy_progress_is_a_widget(tmp_path: Path) -> None:
    """What `PyTorchModel.deploy()` draws by default in Jupyter: an ipywidgets bar, not text."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(WIDGET_CELL)])  # type: ignore[no-untyped-call]
    client = NotebookClient(
        notebook, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute(env=isolated_environment(tmp_path))
    (cell,) = notebook.cells
    kinds = [kind for output in cell.outputs for kind in output.get("data", {})]
    assert "application/vnd.jupyter.widget-view+json" in kinds, cell.outputs
    assert not [output for output in cell.outputs if output.output_type == "stream" and "%|" in output.text]
