"""Real-browser tests: JupyterLab driven by Playwright through Debian's chromium.

What they need: the ``chromium`` package (``apt-get install -y chromium``) and the Python
``playwright`` package (the ``test`` extra). No Playwright browser download is used or needed
(never run ``playwright install``). Missing either, the tests skip with the reason, unless
``AURA_REQUIRE_BROWSER=1`` (CI), which turns the skip into a failure. Deselect them with
``-m "not browser"``.

One JupyterLab server per module, on 127.0.0.1, a free port and a token, serving a temporary
copy of ``notebooks/`` (``../data`` links to the repository's data folder), so autosave never
writes into the repository. Kernels run with ``AURA_SIZE=small`` and this checkout on
``PYTHONPATH``. One page per notebook; each notebook's kernel is shut down after its test
(``DELETE /api/sessions/<id>``). A screenshot is taken at every step into a temporary folder;
a failing test's message lists them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ..conftest import chromium_path

pytestmark = pytest.mark.requires("playwright.sync_api", "chromium")  # a failure with AURA_REQUIRE_BROWSER=1

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = ["00_tour", "01_mamba2_ssd", "02_persistent_homology", "03_moe_routing"]
RUN_ALL_TIMEOUT_S = 600  # one notebook; they take up to a few minutes on a slow shared VM
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = Path(tempfile.mkdtemp(prefix="aura-browser-shots-"))


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Lab:
    def __init__(self, url: str, token: str, root: Path, proc: subprocess.Popen, log: Path):
        self.url, self.token, self.root, self.proc, self.log = url, token, root, proc, log

    def api(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read()
        return json.loads(text) if text else None

    def put_notebook(self, name: str, cells: list[str]):
        import nbformat

        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        self.api("PUT", f"/api/contents/{name}", {"type": "notebook", "format": "json", "content": nb})

    def log_tail(self, n: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-n:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(dir_: Path):
    """User settings: no news/update toasts, every cell rendered (no windowing)."""
    for name, value in {
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }.items():
        p = dir_ / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(value))


@pytest.fixture(scope="module")
def lab(browser, tmp_path_factory):
    base = tmp_path_factory.mktemp("lab")
    root = base / "notebooks"
    root.mkdir()
    for nb in NOTEBOOKS:
        shutil.copy(REPO / "notebooks" / f"{nb}.ipynb", root)
    (base / "data").symlink_to(REPO / "data")  # the notebooks read ../data/...
    _settings(base / "settings")
    port, token = _free_port(), "aura-browser-test"
    env = dict(os.environ)
    env.update(
        AURA_SIZE="small",
        PYTHONPATH=os.pathsep.join([str(REPO), *(os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]),
        JUPYTERLAB_SETTINGS_DIR=str(base / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
        JUPYTER_RUNTIME_DIR=str(base / "runtime"),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = base / "jupyter.log"
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    server = Lab(f"http://127.0.0.1:{port}", token, root, proc, log)
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited ({proc.returncode}):\n{server.log_tail()}")
            try:
                server.api("GET", "/api/status")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() - t0 > 120:
                    pytest.fail(f"jupyter lab not ready after 120 s:\n{server.log_tail()}")
                time.sleep(0.5)
        yield server
    finally:
        with contextlib.suppress(Exception):
            for s in server.api("GET", "/api/sessions") or []:
                server.api("DELETE", f"/api/sessions/{s['id']}")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


class Shots:
    """Screenshots of one test's steps; their paths go into a failing test's message."""

    def __init__(self, test: str):
        self.test, self.paths = test, []

    def __call__(self, page, step: str):
        path = SHOTS / f"{self.test}-{len(self.paths):02d}-{step}.png"
        with contextlib.suppress(Exception):  # a screenshot must never be the failure
            page.screenshot(path=str(path), full_page=False, timeout=15_000)
            self.paths.append(path)
        return path


@pytest.fixture
def shots(request):
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in request.node.name)
    s = Shots(name)
    yield s


@contextlib.contextmanager
def on_failure_show(shots: Shots, page=None, lab: Lab | None = None):
    """Re-raise a failure with the screenshots (a last one taken now) and the server log's tail."""
    try:
        yield
    except BaseException as e:
        if isinstance(e, (KeyboardInterrupt, pytest.skip.Exception)):
            raise
        if page is not None:
            shots(page, "failure")
        extra = "\nscreenshots:\n" + "\n".join(f"  {p}" for p in shots.paths)
        if lab is not None:
            extra += f"\njupyter log (tail):\n{lab.log_tail(1500)}"
        raise AssertionError(f"{type(e).__name__}: {e}{extra}") from e


# ------------------------------------------------------------------------------ helpers

JS_STATE = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  if (!w || !w.content || !w.content.model) return null;
  const cells = w.content.model.cells, out = [];
  for (let i = 0; i < cells.length; i++) {
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    const outputs = [];
    for (let j = 0; j < c.outputs.length; j++) outputs.push(c.outputs.get(j).toJSON());
    out.push({index: i, count: c.executionCount, outputs});
  }
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  const ind = document.querySelector('.jp-Notebook-ExecutionIndicator');
  const prompts = Array.from(w.node.querySelectorAll('.jp-InputPrompt')).map(p => p.textContent);
  return {kernel: k ? k.status : null, indicator: ind ? ind.getAttribute('data-status') : null,
          busyPrompts: prompts.filter(t => t.includes('*')).length, cells: out,
          session: w.sessionContext.session ? w.sessionContext.session.id : null};
}"""

JS_IDLE = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext.session && w.sessionContext.session.kernel;
  if (!k || k.status !== 'idle') return false;
  const ind = document.querySelector('.jp-Notebook-ExecutionIndicator');
  if (ind && ind.getAttribute('data-status') && ind.getAttribute('data-status') !== 'idle') return false;
  return !Array.from(w.node.querySelectorAll('.jp-InputPrompt')).some(p => p.textContent.includes('*'));
}"""


def open_notebook(browser, lab: Lab, name: str, shots: Shots):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    # a workspace of its own, reset: otherwise Lab restores the tabs (and restarts the kernels) of
    # every notebook opened before, and a page with many kernels stalls
    ws = "t" + "".join(c for c in name if c.isalnum())
    page.goto(f"{lab.url}/lab/workspaces/{ws}/tree/{name}?reset&token={lab.token}")
    page.wait_for_function("""() => {
      const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
      return !!(w && w.context && w.context.isReady && w.sessionContext.session
                && w.sessionContext.session.kernel && w.sessionContext.session.kernel.status === 'idle');
    }""", timeout=180_000, polling=500)
    shots(page, "opened")
    return page


def close_notebook(page, lab: Lab):
    with contextlib.suppress(Exception):
        sid = page.evaluate(JS_STATE)["session"]
        if sid:
            lab.api("DELETE", f"/api/sessions/{sid}")
    with contextlib.suppress(Exception):
        page.close()


def command(page, cmd: str, args: dict | None = None):
    """Start a JupyterLab command (not awaited: run-all resolves only when every cell has run)."""
    ok = page.evaluate("""([c, a]) => { const cmds = window.jupyterapp.commands;
      if (!cmds.hasCommand(c)) return false; cmds.execute(c, a || {}); return true; }""", [cmd, args])
    assert ok, f"JupyterLab has no command {cmd!r}"


def run_all_and_wait(page, timeout_s: float = RUN_ALL_TIMEOUT_S):
    command(page, "notebook:clear-all-cell-outputs")  # so that execution counts are this run's
    page.wait_for_function("""() => {
      const m = window.jupyterapp.shell.currentWidget.content.model;
      for (let i = 0; i < m.cells.length; i++) { const c = m.cells.get(i); if (c.type === 'code' && c.executionCount) return false; }
      return true; }""", polling=200)
    command(page, "notebook:run-all-cells")
    page.wait_for_function("""() => {
      const w = window.jupyterapp.shell.currentWidget;
      return Array.from(w.node.querySelectorAll('.jp-InputPrompt')).some(p => p.textContent.includes('*'))
             || (w.sessionContext.session.kernel.status !== 'idle'); }""", timeout=30_000, polling=100)
    page.wait_for_function(JS_IDLE, timeout=timeout_s * 1000, polling=1000)
    time.sleep(1.0)  # the last outputs and widget views settle
    page.wait_for_function(JS_IDLE, timeout=60_000, polling=500)


#: a record printed by the logging module's default format ("INFO:distributed.scheduler:...")
LOG_LINE = re.compile(r"^(DEBUG|INFO|WARNING):[\w.]+:", re.MULTILINE)


def problems(page) -> list[str]:
    """Cells without an execution count, error outputs, tracebacks or library log lines on
    stderr (e.g. a Dask scheduler's), broken widgets."""
    st = page.evaluate(JS_STATE)
    found = []
    for c in st["cells"]:
        if not c["count"]:
            found.append(f"cell {c['index']}: not executed")
        for o in c["outputs"]:
            if o.get("output_type") == "error":
                found.append(f"cell {c['index']}: {o.get('ename')}: {o.get('evalue')}")
            elif o.get("output_type") == "stream" and "Traceback" in "".join(o.get("text", "")):
                found.append(f"cell {c['index']}: traceback on {o.get('name')}: {''.join(o['text'])[-500:]}")
            elif o.get("output_type") == "stream" and LOG_LINE.search("".join(o.get("text", ""))):
                found.append(f"cell {c['index']}: log lines on {o.get('name')}: {''.join(o['text'])[:300]}")
    n = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
                     has_text="Traceback").count()
    if n:
        found.append(f"{n} stderr output(s) with a Traceback")
    if page.get_by_text("Error displaying widget").count():
        found.append("'Error displaying widget' on the page")
    return found


def cell_text(page, index: int) -> str:
    return page.evaluate("""(i) => {
      const c = window.jupyterapp.shell.currentWidget.content.model.cells.get(i);
      const parts = [];
      for (let j = 0; j < c.outputs.length; j++) {
        const o = c.outputs.get(j).toJSON();
        if (o.text) parts.push([].concat(o.text).join(''));
        if (o.ename) parts.push(o.ename + ': ' + o.evalue + '\\n' + [].concat(o.traceback || []).join('\\n'));
        if (o.data && o.data['text/plain']) parts.push([].concat(o.data['text/plain']).join(''));
      }
      return parts.join('\\n'); }""", index)


def run_cell(page, index: int):
    page.evaluate("(i) => { window.jupyterapp.shell.currentWidget.content.activeCellIndex = i; }", index)
    command(page, "notebook:run-cell")


def panel_output(page, heading: str):
    """The output area holding the ComparisonPanel whose title starts with ``heading``."""
    return page.locator(".jp-OutputArea-output", has=page.locator("h4", has_text=heading)).first


# -------------------------------------------------------------------------------- tests

_kept_pages: dict[str, object] = {}  # the persistence notebook stays open for the panel test


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_the_browser(browser, lab, shots, name):
    page = open_notebook(browser, lab, f"{name}.ipynb", shots)
    keep = False
    try:
        with on_failure_show(shots, page, lab):
            t0 = time.monotonic()
            run_all_and_wait(page)
            shots(page, "ran-all")
            found = problems(page)
            assert not found, f"{name} after Run All ({time.monotonic() - t0:.0f} s):\n" + "\n".join(found)
            assert page.locator(".jp-OutputArea-output h4").count() >= 1  # a panel rendered
            keep = name == "02_persistent_homology"
    finally:
        if keep:
            _kept_pages[name] = page
        else:
            close_notebook(page, lab)


def test_panel_run_click_shows_table_and_plot(browser, lab, shots):
    name = "02_persistent_homology"
    page = _kept_pages.pop(name, None)
    if page is None:  # the notebook test did not leave it open (deselected or failed): run it here
        page = open_notebook(browser, lab, f"{name}.ipynb", shots)
        run_all_and_wait(page)
    try:
        with on_failure_show(shots, page, lab):
            out = panel_output(page, "persistence")
            out.scroll_into_view_if_needed()
            label = "n=100 d=3 dim 1"  # not the size the notebook ran from code
            out.locator(".widget-select-multiple select").select_option(label=label)
            shots(page, "size-picked")
            out.get_by_role("button", name="Run").click()
            status = out.locator(".widget-html-content", has_text="done:")
            status.wait_for(timeout=180_000)
            table = out.locator("table", has_text=label)
            table.wait_for(timeout=30_000)
            img = out.locator("img").first
            img.wait_for(timeout=30_000)
            page.wait_for_function("(el) => el.complete && el.naturalWidth > 0", arg=img.element_handle(), timeout=30_000)
            shots(page, "panel-ran")
            assert "done:" in status.inner_text()
            assert "gudhi" in table.inner_text()
            assert not page.get_by_text("Error displaying widget").count()
    finally:
        close_notebook(page, lab)


SLOW_PANEL = '''\
import time, numpy as np, aura_lab
from aura_lab import _control
from aura_lab.harness.core import PanelSpec
from aura_lab.widgets import ComparisonPanel

def slow_call(backend, label):  # a long case that polls the control the way a kernel does
    t0 = time.monotonic()
    while backend == "slow" and time.monotonic() - t0 < 120:
        _control.current().raise_if_cancelled()
        time.sleep(0.02)
    return np.zeros(1)

spec = PanelSpec(name="slowdemo", backends=["fast", "slow"], reference="fast",
                 sizes={"one": {}, "two": {}}, dtypes=["float32"], make=lambda size, dtype, seed: "x",
                 call=slow_call, check=lambda out, ref, dtype: (0.0, True, "exact"), status=lambda b: (True, ""))
panel = ComparisonPanel(spec, sizes=["one", "two"], repeats=1)
panel
'''


def test_stop_button_stops_a_running_panel(browser, lab, shots):
    lab.put_notebook("scratch-stop.ipynb", [SLOW_PANEL, 'print("kernel free while the panel runs")',
                                            'panel.wait(10)\nprint(panel.status.value, len(panel.results), panel.busy)'])
    page = open_notebook(browser, lab, "scratch-stop.ipynb", shots)
    try:
        with on_failure_show(shots, page, lab):
            run_cell(page, 0)
            out = panel_output(page, "slowdemo")
            out.wait_for(timeout=120_000)
            out.get_by_role("button", name="Run").click()
            out.locator(".widget-html-content", has_text="running one: slow").wait_for(timeout=30_000)
            shots(page, "running")
            # the kernel is free while the sweep runs: another cell executes at once
            run_cell(page, 1)
            page.wait_for_function("() => window.jupyterapp.shell.currentWidget.content.model.cells.get(1).outputs.length > 0",
                                   timeout=20_000, polling=100)
            assert "kernel free" in cell_text(page, 1)
            time.sleep(1.0)
            stop = out.get_by_role("button", name="Stop")
            assert stop.is_enabled()
            t0 = time.monotonic()
            stop.click()
            out.locator(".widget-html-content", has_text="stopped").wait_for(timeout=2_000)
            dt = time.monotonic() - t0
            shots(page, "stopped")
            assert dt < 2.0, f"'stopped' shown {dt:.2f} s after the click"
            assert "stopped after 1/4 cases" in out.inner_text()
            assert out.locator("table", has_text="fast").count() == 1  # the finished row is kept
            assert not stop.is_enabled()
            run_cell(page, 2)
            page.wait_for_function("() => window.jupyterapp.shell.currentWidget.content.model.cells.get(2).outputs.length > 0",
                                   timeout=20_000, polling=100)
            assert "stopped after 1/4 cases 1 False" in cell_text(page, 2)
    finally:
        close_notebook(page, lab)


def _interrupt_case(browser, lab, shots, name: str, long_cell: str):
    lab.put_notebook(name, ["import sys, numpy as np, aura_lab\nprint(sys.executable, aura_lab.__file__)",
                            long_cell, 'print("next cell ran")'])
    page = open_notebook(browser, lab, name, shots)
    try:
        with on_failure_show(shots, page, lab):
            run_cell(page, 0)
            page.wait_for_function("() => window.jupyterapp.shell.currentWidget.content.model.cells.get(0).outputs.length > 0",
                                   timeout=120_000, polling=200)
            where = cell_text(page, 0)
            assert str(REPO / "aura_lab") in where, f"the kernel imported another aura_lab: {where}"
            assert sys.prefix in where, f"the kernel is not this venv's python: {where}"
            page.wait_for_function(JS_IDLE, timeout=60_000, polling=200)
            run_cell(page, 1)
            page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'busy'",
                                   timeout=20_000, polling=50)
            time.sleep(1.0)
            shots(page, "long-cell-running")
            t0 = time.monotonic()
            command(page, "notebook:interrupt-kernel")  # JupyterLab 4.6 has no kernel:interrupt
            page.wait_for_function("""() => {
              const c = window.jupyterapp.shell.currentWidget.content.model.cells.get(1);
              for (let j = 0; j < c.outputs.length; j++) {
                const o = c.outputs.get(j).toJSON();
                if (o.ename === 'KeyboardInterrupt' || (o.ename || '').includes('Cancelled')
                    || [].concat(o.text || []).join('').includes('KeyboardInterrupt')) return true;
              }
              return false; }""", timeout=2_000, polling=50)
            dt = time.monotonic() - t0
            shots(page, "interrupted")
            assert dt < 2.0, f"KeyboardInterrupt shown {dt:.2f} s after the interrupt"
            page.wait_for_function(JS_IDLE, timeout=30_000, polling=100)
            run_cell(page, 2)
            page.wait_for_function("() => window.jupyterapp.shell.currentWidget.content.model.cells.get(2).outputs.length > 0",
                                   timeout=30_000, polling=100)
            shots(page, "next-cell")
            assert "next cell ran" in cell_text(page, 2)
    finally:
        close_notebook(page, lab)  # also ends a kernel still stuck in a native call


def test_interrupt_pure_python_loop(browser, lab, shots):
    """The mechanics (interrupt command, output, the next cell) on a loop that Python interrupts."""
    _interrupt_case(browser, lab, shots, "scratch-interrupt-py.ipynb",
                    "import time\nfor _ in range(1200):\n    time.sleep(0.05)")


def test_interrupt_long_native_persistence(browser, lab, shots):
    """Jupyter's Interrupt on the engine (~100 s uninterrupted): KeyboardInterrupt within 2 s."""
    _interrupt_case(browser, lab, shots, "scratch-interrupt-mojo.ipynb",
                    "X = np.random.default_rng(0).standard_normal((3000, 8))\n"
                    "aura_lab.rips_persistence(X, maxdim=2, backend='mojo')")
