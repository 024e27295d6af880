"""The notebooks in examples/notebooks run from top to bottom without an error."""

import nbformat
import pytest
from nbclient import NotebookClient


@pytest.mark.parametrize("name", ["smelt_tour.ipynb"])
def test_notebook_runs(root, name):
    path = root / "examples" / "notebooks" / name
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
