"""nbval settings for the notebooks: stderr (compiler messages, tqdm, warnings) is never
compared; only cells marked NBVAL_CHECK_OUTPUT are (run with --nbval-lax).

nbval's kernels start in this folder, so a relative ``PYTHONPATH`` entry (``PYTHONPATH=.``
from the repository root) is made absolute here: the kernels import this checkout's aura_lab,
not whichever one the environment has installed."""

import os

if os.environ.get("PYTHONPATH"):
    os.environ["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) if p else p
                                               for p in os.environ["PYTHONPATH"].split(os.pathsep))


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr", "text/html", "application/javascript",
                                   "application/vnd.jupyter.widget-view+json")
