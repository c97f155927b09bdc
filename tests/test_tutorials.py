"""The tutorials (docs/tutorials/*.py, jupytext percent format) run in a real Jupyter kernel (nbclient).

Each must finish without an error, draw its figures inline (image/png outputs) and use only public
names of lmech (no ``lmech.x._private``). Skipped, with the reason, where the `tutorials` extra
(jupytext, nbclient, ipykernel) is not installed.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).resolve().parent.parent / "docs" / "tutorials").glob("*.py"))
pytest.importorskip("jupytext", reason="the tutorials extra is not installed: pip install -e '.[tutorials]'")
pytest.importorskip("nbclient", reason="the tutorials extra is not installed: pip install -e '.[tutorials]'")
pytest.importorskip("ipykernel", reason="the tutorials extra is not installed: pip install -e '.[tutorials]'")


def test_there_is_a_tutorial_per_strand():
    names = {p.stem for p in TUTORIALS}
    assert {"deep_linear_networks", "edge_of_stability", "kernel_regression_eigenlearning", "lazy_vs_rich"} <= names


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_in_a_jupyter_kernel(path, tmp_path, monkeypatch):
    import jupytext
    from nbclient import NotebookClient

    source = path.read_text()
    assert not re.search(r"lmech(\.\w+)*\._\w", source), "tutorials use public names only"
    notebook = jupytext.read(path)
    monkeypatch.setenv("LMECH_STORE", str(tmp_path / "lab"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1"))
    start = time.time()
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    seconds = time.time() - start
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o for o in outputs if o.output_type in ("display_data", "execute_result") and "image/png" in o.get("data", {})]
    assert figures, "figures are drawn inline"
    if path.stem == "deep_linear_networks":  # run() draws its progress bar in the cell
        html = [o["data"].get("text/html", "") for o in outputs if o.output_type in ("display_data", "update_display_data")]
        assert any("lmech-progress" in h for h in html)
    print(f"{path.name}: {seconds:.0f} s")
