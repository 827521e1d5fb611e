"""`make notebook`: the post as a notebook (examples/seed.ipynb), executed by a real Jupyter kernel.

1. Start `moorage serve` (state in ./demo-data/notebook-server; ports 8080 and 9000 when free).
2. Run every cell of examples/seed.ipynb in a Python 3 kernel, in ./demo-data/notebook, with only
   MOORAGE_URL set: the notebook's own set-up cell configures everything else.
3. Save the executed notebook as ./demo-data/notebook/seed.ipynb, to open in Jupyter, and stop the server.

The set-up cell writes /opt/ml/metadata/resource-metadata.json (what the SageMaker SDK's
get_execution_role() reads) when there is none. This script removes it again at the end if it was
absent before. Where this user cannot create it, the run uses the post's other option instead
(`role = "SageMakerRole"`) and says so; where one exists already, get_execution_role() reads it.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

import nbformat
from examples.demo import DEMO, ROOT, moorage_server, say
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from moorage.sdk.notebook_role import NOTEBOOK_METADATA_FILE, NotebookRole

NOTEBOOK = ROOT / "examples" / "seed.ipynb"
SETUP = 'moorage.configure(execution_role="SageMakerRole")'
ROLE_LINE = "role = get_execution_role() "


def without_metadata_file(notebook: nbformat.NotebookNode, exists: bool) -> None:
    """Leave the metadata file alone: an existing one is read as it is; else the post's role name."""
    for cell in notebook.cells:
        if cell.cell_type == "code" and SETUP in cell.source:
            cell.source = cell.source.replace(SETUP, "moorage.configure()")
        elif not exists and cell.cell_type == "code" and ROLE_LINE in cell.source:
            cell.source = cell.source.replace(
                ROLE_LINE,
                'role = "SageMakerRole"  # make notebook: this user cannot create the metadata file',
            )


def main() -> int:
    data_dir, work = DEMO / "notebook-server", DEMO / "notebook"
    for directory in (data_dir, work):
        if directory.exists():
            shutil.rmtree(directory)
    work.mkdir(parents=True)
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    missing = tuple(d for d in NOTEBOOK_METADATA_FILE.parents if not d.exists())
    nearest = next(d for d in NOTEBOOK_METADATA_FILE.parents if d.exists())
    if NOTEBOOK_METADATA_FILE.exists():
        say(f"{NOTEBOOK_METADATA_FILE} exists: get_execution_role() returns the role it names")
        without_metadata_file(notebook, exists=True)
    elif not os.access(nearest, os.W_OK):
        say(f'this user cannot create {NOTEBOOK_METADATA_FILE}: the run uses role = "SageMakerRole"')
        without_metadata_file(notebook, exists=False)
    absent_before = not NOTEBOOK_METADATA_FILE.exists()
    created = NotebookRole(NOTEBOOK_METADATA_FILE, "", missing)
    started = time.monotonic()
    code = 0
    with moorage_server(data_dir, keep_running=False, any_port=False) as info:
        env = {**os.environ, "MOORAGE_URL": info["url"], "MOORAGE_DATA_DIR": str(data_dir)}
        say("running examples/seed.ipynb in a Python 3 kernel (the SageMaker SDK waits 30 s in deploy)")
        client = NotebookClient(
            notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(work)}}
        )
        try:
            client.execute(env=env)
        except CellExecutionError as exc:
            say(f"a cell failed:\n{exc}")
            code = 1
        finally:
            nbformat.write(notebook, work / "seed.ipynb")  # type: ignore[no-untyped-call]
            if absent_before:  # the set-up cell wrote it: leave the machine as it was
                created.undo()
    if code == 0:
        (cell,) = [c for c in notebook.cells if c.cell_type == "code" and "predictor.predict(" in c.source]
        say("the prediction cell answered:")
        print(cell.outputs[-1]["data"]["text/plain"])
    say(f"done in {time.monotonic() - started:.0f} s; the executed notebook: {work / 'seed.ipynb'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
