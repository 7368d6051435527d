"""Headless tests of the ComparisonPanel: set widget values, click Run, wait, assert on results."""

import math
import threading
import time

import numpy as np
import pytest

import aura_lab
from aura_lab import _control, harness
from aura_lab.distance import op as distance_op
from aura_lab.harness import FAMILIES
from aura_lab.harness.core import PanelSpec
from aura_lab.widgets import ComparisonPanel


def smallest(panel, k=1):
    return tuple(list(panel.spec.sizes)[:k])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_panel_runs_each_op(family):
    p = ComparisonPanel(family)
    p.sizes.value = smallest(p)
    p.repeats.value = 1
    p.run.click()
    assert p.wait(timeout=600)
    backends = p.selected_backends()
    assert backends and p.results
    assert {r["backend"] for r in p.results} == set(backends)
    for r in p.results:
        assert not r.get("error"), r
        assert r["passed"], r
        assert r["ms"] > 0
    assert p.figure is not None and len(p.figure.axes) == 2
    assert "pass" in p.badges.value and "FAIL" not in p.badges.value
    assert "done:" in p.status.value and not p.run.disabled and p.stop.disabled and not p.busy
    assert p.progress.value == p.progress.max
    assert bytes(p.plot.value[:8]) == b"\x89PNG\r\n\x1a\n"  # the plot, drawn off-screen, shown as a PNG


def test_panel_several_sizes_and_speedups():
    p = ComparisonPanel("distance", sizes=["n=256 d=3", "n=256 d=64", "n=1024 d=3"], repeats=1)
    p.toggles["max"].value = False
    p.run.click()
    assert p.wait(timeout=600)
    assert [r["size"] for r in p.results] == [s for s in p.sizes.value for _ in p.selected_backends()]
    for r in p.results:
        assert math.isclose(r["speedup_vs_numpy"] * r["ms"], next(
            x["ms"] for x in p.results if x["size"] == r["size"] and x["backend"] == "numpy"), rel_tol=1e-9)
    assert {"GB/s", "GFLOP/s"} <= set(p.frame().columns)
    assert len(p.history) == 1


def test_unavailable_backend_is_disabled_with_reason(monkeypatch):
    spec = harness.panel_spec("distance")
    spec.status = lambda b: (False, "compiler missing on this box") if b == "mojo" else (True, "")
    p = ComparisonPanel(spec)
    assert p.toggles["mojo"].disabled and not p.toggles["mojo"].value
    assert "compiler missing on this box" in p.toggles["mojo"].tooltip
    assert "compiler missing on this box" in p.unavailable.value
    p.sizes.value = ("n=256 d=3",)
    p.repeats.value = 1
    p.run.click()
    assert p.wait(timeout=600)
    assert "mojo" not in {r["backend"] for r in p.results}


def test_backend_that_raises_is_shown_and_panel_stays_usable(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("kernel exploded")

    monkeypatch.setitem(distance_op.impls["torch"].__dict__, "fn", boom)
    p = ComparisonPanel("distance", sizes=["n=256 d=3"], repeats=1)
    p.run.click()
    assert p.wait(timeout=600)
    bad = [r for r in p.results if r["backend"] == "torch"]
    assert bad and "kernel exploded" in bad[0]["error"] and not bad[0]["passed"]
    assert "kernel exploded" in p.status.value
    assert "torch: error" in p.badges.value
    assert all(r["passed"] for r in p.results if r["backend"] != "torch")
    monkeypatch.undo()
    p.run.click()  # the next run works
    assert p.wait(timeout=600)
    assert all(r["passed"] and not r.get("error") for r in p.results)
    assert len(p.history) == 2


def test_no_backend_selected_says_so():
    p = ComparisonPanel("distance")
    for t in p.toggles.values():
        t.value = False
    p.run.click()
    assert p.wait(timeout=600)
    assert "select at least one backend" in p.status.value and not p.run.disabled


def test_auto_choice_is_shown():
    p = ComparisonPanel("distance", sizes=["n=1024 d=64"])
    assert "auto picks" in p.auto.value
    p.sizes.value = ("n=256 d=3", "n=4096 d=64")
    assert p.auto.value.count("auto picks") == 2


# ------------------------------------------------------------ the background thread, Stop, busy
# A spec that needs no kernel: backend "fast" returns at once; "gated" blocks (its first call
# at each size) until the test opens that size's gate, polling the control like a kernel does.

class Gated:
    def __init__(self, sizes=("a", "b"), make_error=None):
        self.gates = {s: threading.Event() for s in sizes}
        self.entered = []  # sizes whose gated call is blocking now or was
        self.entered_event = threading.Event()
        self.make_error = make_error
        self.spec = PanelSpec(
            name="gated", backends=["fast", "gated"], reference="fast",
            sizes={s: {"label": s} for s in sizes}, dtypes=["float32"],
            make=self.make, call=self.call, check=lambda out, ref, dtype: (0.0, True, "exact"),
            status=lambda b: (True, ""),
        )

    def make(self, size, dtype, seed):
        if self.make_error and size["label"] == self.make_error:
            raise RuntimeError(f"cannot build inputs for {size['label']}")
        return size["label"]

    def call(self, backend, label):
        if backend == "gated":
            gate = self.gates[label]
            if not gate.is_set():
                self.entered.append(label)
                self.entered_event.set()
            t0 = time.monotonic()
            while not gate.wait(0.01):
                _control.current().raise_if_cancelled()  # what a polling kernel does
                assert time.monotonic() - t0 < 60, "test gate never opened"
        return np.zeros(1)

    def wait_entered(self, label, timeout=30):
        t0 = time.monotonic()
        while label not in self.entered:
            assert time.monotonic() - t0 < timeout, f"the sweep never reached gated @ {label}"
            time.sleep(0.005)


def gated_panel(**kw):
    g = Gated(**kw)
    p = ComparisonPanel(g.spec, sizes=list(g.spec.sizes), repeats=1)
    return g, p


def test_run_returns_at_once_and_rows_arrive_as_cases_finish():
    g, p = gated_panel()
    p.run.click()  # returns while the sweep blocks in gated @ a
    try:
        g.wait_entered("a")
        assert p.busy and not p.stop.disabled
        assert [(r["size"], r["backend"]) for r in p.results] == [("a", "fast")]
        assert p.progress.max == 6 and p.progress.value == 2  # ref a, fast a
        assert "running a: gated (3/6)" in p.status.value
        assert "fast" in p.table.value and "<table" in p.table.value
        first_plot = bytes(p.plot.value)
        assert first_plot.startswith(b"\x89PNG")
        g.gates["a"].set()
        g.wait_entered("b")
        assert [(r["size"], r["backend"]) for r in p.results] == [("a", "fast"), ("a", "gated"), ("b", "fast")]
        assert p.progress.value == 5
        assert "gated: pass" in p.badges.value
        assert bytes(p.plot.value) != first_plot  # redrawn with the new rows
    finally:
        for e in g.gates.values():
            e.set()
    assert p.wait(timeout=30)
    assert not p.busy and p.stop.disabled and "done: 4/4 runs" in p.status.value
    assert len(p.results) == 4 and all(r["passed"] for r in p.results)
    assert p.history == [p.results] and p.progress.value == p.progress.max


def test_stop_cancels_and_keeps_finished_rows():
    g, p = gated_panel()
    p.run.click()
    g.wait_entered("a")
    t0 = time.monotonic()
    p.stop.click()
    assert p.wait(timeout=5), "Stop did not end the sweep"
    assert time.monotonic() - t0 < 5
    assert "stopped after 1/4 cases" in p.status.value
    assert [(r["size"], r["backend"]) for r in p.results] == [("a", "fast")]
    assert "fast" in p.table.value and p.figure is not None
    assert p.stop.disabled and not p.busy and not p.errors
    assert p.history == [p.results]
    # the next run starts from scratch and is not cancelled by the old control
    for e in g.gates.values():
        e.set()
    p.run.click()
    assert p.wait(timeout=30)
    assert "done: 4/4 runs" in p.status.value and len(p.history) == 2


def test_stop_between_cases_without_polling():
    """A backend that never polls still stops: the sweep checks the control before each call."""
    g, p = gated_panel()
    calls = []

    def call(backend, label):
        calls.append((backend, label))
        if len(calls) == 1:
            p._control.cancel()  # as if Stop were pressed while this (non-polling) call ran
        return np.zeros(1)

    g.spec.call = call
    p.run.click()
    assert p.wait(timeout=10)
    assert calls == [("fast", "a")] and p.results == []
    assert "stopped after 0/4 cases" in p.status.value


def test_second_run_is_refused_while_busy():
    g, p = gated_panel()
    p.run.click()
    g.wait_entered("a")
    thread = p._thread
    p.run.click()
    assert "a run is already going: press Stop first" in p.status.value
    assert p._thread is thread and p.busy
    assert [(r["size"], r["backend"]) for r in p.results] == [("a", "fast")]
    p.stop.click()
    assert p.wait(timeout=5)
    assert "already going" not in p.status.value and len(p.history) == 1


def test_error_in_the_thread_is_reported():
    g, p = gated_panel(make_error="b")
    g.gates["a"].set()
    p.run.click()
    assert p.wait(timeout=30)
    assert "run failed after 2/4 cases" in p.status.value
    assert "cannot build inputs for b" in p.status.value
    assert p.errors == ["RuntimeError: cannot build inputs for b"]
    assert "RuntimeError" in p.traceback
    assert len(p.results) == 2 and "gated" in p.table.value
    assert not p.busy and p.stop.disabled
    g.make_error = None
    g.gates["b"].set()
    p.run.click()  # usable again
    assert p.wait(timeout=30) and "done: 4/4 runs" in p.status.value and not p.errors


def test_wait_without_run_and_with_timeout():
    g, p = gated_panel()
    assert p.wait() is True and not p.busy
    p.run.click()
    g.wait_entered("a")
    assert p.wait(timeout=0.05) is False and p.busy
    for e in g.gates.values():
        e.set()
    assert p.wait() is True and not p.busy



@pytest.mark.requires("mojo")
def test_stop_cancels_a_running_mojo_kernel_within_a_second():
    """Stop reaches a real kernel through the control: the engine (~100 s uninterrupted on
    3000 points in R^8 at maxdim 2) returns within a second of the click (the panel then
    draws its last rows and says it stopped)."""
    X = np.random.default_rng(0).standard_normal((3000, 8))
    started = threading.Event()
    ended: list[float] = []

    def call(backend, inputs):
        if backend == "fast":
            return np.zeros(1)
        started.set()
        try:
            return aura_lab.rips_persistence(inputs, maxdim=2, backend="mojo")
        finally:
            ended.append(time.monotonic())

    spec = PanelSpec(name="engine", backends=["fast", "mojo"], reference="fast", sizes={"big": {"n": 3000}},
                     dtypes=["float64"], make=lambda size, dtype, seed: X, call=call,
                     check=lambda out, ref, dtype: (0.0, True, "-"), status=lambda b: (True, ""))
    p = ComparisonPanel(spec, repeats=1)
    p.run.click()
    assert started.wait(30)
    time.sleep(1.0)  # inside the engine now
    t0 = time.monotonic()
    p.stop.click()
    assert p.wait(timeout=10)
    assert ended and ended[0] - t0 < 1.0, "the engine ran on for over a second after Stop"
    assert "stopped after 1/2 cases" in p.status.value and not p.errors


def test_collection_panel_times_the_peers_against_gudhi_and_checks_every_diagram():
    p = ComparisonPanel("collection", repeats=1)
    assert p.spec.reference == "gudhi RipsPersistence(n_jobs=2)" and p.sizes.value == ("60 clouds x 70 points",)
    p.toggles["giotto-ph loop (processes, 2)"].value = False  # its worker pool: the bench test covers it
    p.run.click()
    assert p.wait(timeout=600)
    assert [r["backend"] for r in p.results] == p.selected_backends()
    for r in p.results:
        assert not r.get("error") and r["passed"], r
        assert r["clouds/s"] == pytest.approx(60 / (r["ms"] * 1e-3))
    assert "clouds/s" in p.frame().columns
    # the check sees one changed death and one missing bar in one cloud of the 60
    spec = p.spec
    X = spec.make(spec.sizes["60 clouds x 70 points"], "float64", 0)
    ref = spec.call(spec.reference, X)
    ours = spec.call("aura RipsPersistence()", X)
    moved = [list(d) for d in ours]
    h1 = np.array(moved[5][1], dtype=np.float64)
    longest = int(np.argmax(h1[:, 1] - h1[:, 0]))  # a long bar: the cheapest matching moves it back
    h1[longest, 1] += 1e-3
    moved[5][1] = h1
    err, ok, _ = spec.check(moved, ref, "float64")
    assert not ok and err == pytest.approx(1e-3, rel=1e-6)
    moved[5][1] = np.delete(h1, longest, axis=0)
    assert not spec.check(moved, ref, "float64")[1]
