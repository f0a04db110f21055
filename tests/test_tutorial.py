"""The tutorial notebook runs from top to bottom, as a user would run it (tiny sizes, under a minute)."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need the dev extra: pip install -e '.[dev]'")
nbclient = pytest.importorskip("nbclient", reason="the notebook tests need the dev extra: pip install -e '.[dev]'")

NOTEBOOK = Path(__file__).resolve().parents[1] / "docs" / "tutorial.ipynb"


@pytest.mark.slow  # ~35 s on 2 busy cores: over the 30 s of a fast test; still run in CI
def test_tutorial_notebook_runs_and_recovers_the_spring_law(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # kept without outputs
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "discovered: F = -k (r - 1) r̂,  k = 2" in text and "exact: True" in text
    assert "near miss: not exact" in text
    work = tmp_path / "tutorial-runs"
    for run in ("spring-run", "own-run"):
        assert (work / run / "report.html").exists() and (work / run / "figures" / "law.png").exists()
    images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {}))
    assert images == 4
