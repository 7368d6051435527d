"""nbval settings for the notebooks: stderr (compiler messages, tqdm, warnings) is never
compared; only cells marked NBVAL_CHECK_OUTPUT are (run with --nbval-lax)."""


def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == ".ipynb":
        collector.skip_compare += ("stderr", "text/html", "application/javascript",
                                   "application/vnd.jupyter.widget-view+json")
