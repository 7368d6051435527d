"""Regenerate notebooks/*.ipynb from their paired py:percent scripts and store reference outputs.

    .venv/bin/python tools/sync_notebooks.py [NAME ...]

Each notebook is executed top to bottom (AURA_SIZE=small, cwd notebooks/) with nbclient; the
outputs of cells marked ``# NBVAL_CHECK_OUTPUT`` are kept as nbval's reference, every other
output and the widget state are stripped so the repository holds no timings or images.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent / "notebooks"


def sync(py: Path) -> None:
    nb = jupytext.read(py)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    t0 = time.perf_counter()
    os.environ.setdefault("AURA_SIZE", "small")
    # store_widget_state=True: with False, nbclient's Output-widget emulation raises KeyError as
    # soon as a panel draws into its Output; the state is dropped from the metadata below anyway
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}},
                   store_widget_state=True).execute()
    for cell in nb.cells:
        if cell.cell_type == "code":
            if "NBVAL_CHECK_OUTPUT" not in cell.source:
                cell.outputs = []
                cell.execution_count = None
            else:  # nbval rejects a reference cell with outputs but no execution count
                cell.outputs = [o for o in cell.outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
    nb.metadata.pop("widgets", None)
    out = py.with_suffix(".ipynb")
    nbformat.write(nb, out)
    print(f"{out.name}: executed in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    names = sys.argv[1:]
    for py in sorted(ROOT.glob("[0-9][0-9]_*.py")):
        if not names or py.stem in names:
            sync(py)
