"""Shared test setup.

* Layers by folder: ``tests/unit`` (per-op unit and property tests), ``tests/integration``
  (the CLI, the panel, MAX, the build pipeline, collections, docs), ``tests/reliability`` (cancel, fork,
  cache faults, load, fuzz) and ``tests/browser`` (real JupyterLab); each test gets the mark of
  its folder (``-m unit``, ``-m "not browser"``). ``make check`` runs ``tests/unit -m "not slow"``.
* One way to skip: ``@pytest.mark.requires("mojo", "ripser", ...)`` skips with the reason when
  a need is missing: a backend (``backend_status``), ``root``, ``chromium`` or else a Python
  module. ``requires_mojo`` is ``requires("mojo")``. A module that a whole file uses is
  ``ripser = optional_module("ripser")`` (None when missing) beside ``pytestmark =
  pytest.mark.requires("ripser")``. Needs in ``STRICT`` fail instead of
  skipping when their variable is 1 (CI sets ``AURA_REQUIRE_BROWSER=1``).
* Hypothesis is derandomized (profile ``aura``): fixed examples on every run.
* ``AURA_TEST_BACKENDS=numpy,torch`` restricts the backends tests run on (default: all): the
  others count as missing.
* The Mojo kernels are compiled once, in the controller process, before any test (and
  before xdist workers start), so no test pays for or races on a cold build.
* ``backend_params(op)`` parametrizes a test over an op's backends; unavailable ones are
  skipped *with the reason* (only when the compiler is really missing, for mojo).
* ``make test`` runs on xdist workers with ``--dist loadfile``: the tests of one file (a
  notebook's cells, the browser tests' one Lab server, the signal and soak tests) run on one
  worker, in order. Tests of different files share nothing: each has its own temporary cache,
  kernel tree and environment (monkeypatch). (``--dist loadgroup`` would not do: with pytest 9
  xdist 3.8's ``xdist_group`` is ignored.) Two refinements (``pytest_xdist_make_scheduler``,
  ``pytest_collection_modifyitems``): the unit tests (``ONE_BY_ONE``) go out one by one, as in
  ``make check``, and the long files and tests (``LONG_FIRST``) go out first, so that no long
  one starts last while the other worker idles.
* Repetition tests (interpreters exiting after a failed MAX compile, rounds of signals during a
  kernel) run a few rounds by default and their full count with ``--full-rounds`` (the figures
  of docs/reliability.md): the ``rounds(full, quick)`` fixture picks one.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from hypothesis import settings

from aura_lab.registry import BACKENDS, backend_status

# seeds are fixed: every hypothesis test draws the same examples on every run and machine (no
# example database either), so a failure reproduces and none appears by chance in one run
settings.register_profile("aura", derandomize=True, database=None)
settings.load_profile("aura")

TESTS = Path(__file__).resolve().parent
LAYERS = ("unit", "integration", "reliability", "browser")

#: under ``--dist loadfile``: node ids whose tests go out one by one rather than by file
ONE_BY_ONE = ("tests/unit/",)
#: under xdist: node ids that go out first, in this order (the long ones of `make test`'s
#: --durations list, most files whole; the browser tests' timed clicks beside a notebook rather
#: than beside test_max.py's pairs of MAX compiles); the others follow in collection order
LONG_FIRST = ("tests/browser/", "notebooks/", "tests/integration/test_max.py", "tests/reliability/test_cancel.py",
              "tests/unit/test_routing.py::test_bench_and_validate_smoke",
              "tests/integration/test_mojo_pipeline.py", "tests/reliability/test_cache_faults.py", "tests/unit/test_models.py")

#: needs that fail the test instead of skipping it when their variable is "1"
STRICT = {"chromium": "AURA_REQUIRE_BROWSER", "playwright.sync_api": "AURA_REQUIRE_BROWSER"}

def chromium_path() -> str | None:
    for p in (os.environ.get("CHROMIUM_BIN"), shutil.which("chromium"), "/usr/bin/chromium"):
        if p and os.access(p, os.X_OK):
            return p
    return None


def _module_missing(name: str) -> str | None:
    try:
        found = importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a parent package is missing
        found = False
    return None if found else f"the Python module {name} is not installed (pip install -e '.[test]')"


#: the needs that are not Python modules: name -> why it is missing (None: present)
NEEDS = {
    "root": lambda: None if os.getuid() == 0 else "needs root (chown to another user)",
    "chromium": lambda: None if chromium_path() else "chromium is not installed (apt-get install -y chromium)",
}


def _wanted():
    env = os.environ.get("AURA_TEST_BACKENDS")
    return set(env.split(",")) if env else None


@functools.cache
def missing(need: str) -> str | None:
    """Why ``need`` (a backend, a name in NEEDS or a Python module) is missing; None if present."""
    wanted = _wanted()
    if need in BACKENDS and wanted is not None and need not in wanted:
        return f"{need} not in AURA_TEST_BACKENDS"
    if need in BACKENDS:
        st = backend_status(need)
        return None if st.available else f"{need} unavailable: {st.reason}"
    if need in NEEDS:
        return NEEDS[need]()
    return _module_missing(need)


def _needs(item) -> list[str]:
    needs = [n for mark in item.iter_markers("requires") for n in mark.args]
    return needs + ["mojo"] * any(item.iter_markers("requires_mojo"))


def pytest_runtest_setup(item):
    for need in _needs(item):
        reason = missing(need)
        if reason and os.environ.get(STRICT.get(need, "")) == "1":
            pytest.fail(f"{STRICT[need]}=1 but {reason}", pytrace=False)
        if reason:
            pytest.skip(reason)


def optional_module(name: str):
    """The module ``name``, or None when it is missing (its tests carry ``requires(name)``)."""
    return None if _module_missing(name) else importlib.import_module(name)


def pytest_addoption(parser):
    parser.addoption("--full-rounds", action="store_true",
                     help="repetition tests (interpreter exits, signal rounds) run their full count, as for "
                          "docs/reliability.md; by default a few rounds")


def kernel_threads_left(grace_s: float = 1.0) -> list:
    """The ``aura-kernel`` worker threads still alive after up to ``grace_s`` seconds. A
    worker's last Python action is to tell the waiting thread that the kernel returned (see
    ``aura_lab._control._Finished``); the interpreter ends the thread a moment later, so a
    check made at once can still see it (one CI run in ~1 600 did)."""
    deadline = time.monotonic() + grace_s
    while True:
        alive = [t for t in threading.enumerate() if t.name == "aura-kernel"]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.01)


@pytest.fixture
def rounds(request):
    """``rounds(full, quick)``: a repetition test's count, ``full`` under ``--full-rounds``."""
    full_rounds = request.config.getoption("full_rounds")
    return lambda full, quick: full if full_rounds else quick


def backend_params(op):
    """One parameter per backend of ``op``, each requiring its backend."""
    return [pytest.param(b, marks=pytest.mark.requires(b), id=b) for b in op.backends]


def _layer(path: Path) -> str | None:
    try:
        rel = path.relative_to(TESTS)
    except ValueError:
        return None
    return rel.parts[0] if len(rel.parts) > 1 and rel.parts[0] in LAYERS else None


def _start_rank(nodeid: str) -> int:
    return next((i for i, prefix in enumerate(LONG_FIRST) if nodeid.startswith(prefix)), len(LONG_FIRST))


@pytest.hookimpl(tryfirst=True)  # before -m deselects by mark
def pytest_collection_modifyitems(config, items):
    for item in items:
        layer = _layer(Path(str(item.fspath)))
        if layer:
            item.add_marker(layer)
    if hasattr(config, "workerinput"):  # an xdist worker: the scheduler hands out work in this order
        items.sort(key=lambda item: _start_rank(item.nodeid))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, but the ``ONE_BY_ONE`` tests are work units of their own."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class LoadFileButUnitTests(LoadFileScheduling):
        def _split_scope(self, nodeid):
            return nodeid if nodeid.startswith(ONE_BY_ONE) else super()._split_scope(nodeid)

    return LoadFileButUnitTests(config, log)


def pytest_sessionstart(session):
    if hasattr(session.config, "workerinput"):  # xdist worker: the controller built already
        return
    wanted = _wanted()
    if wanted is not None and "mojo" not in wanted:
        return
    from aura_lab import _mojo

    ok, _, reason = _mojo.status()
    if not ok:
        print(f"\naura_lab tests: mojo backend skipped: {reason}")
        return
    for name in _mojo.kernel_names():
        try:
            _mojo.build(name)
        except _mojo.MojoBuildError as e:  # the tests of that kernel will fail with the diagnostics
            print(f"\naura_lab tests: {e}")
