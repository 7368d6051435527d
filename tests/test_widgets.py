"""Headless tests of the ComparisonPanel: set widget values, click Run, assert on results."""

import math

import pytest

from aura_lab import harness
from aura_lab.distance import op as distance_op
from aura_lab.harness import FAMILIES
from aura_lab.widgets import ComparisonPanel


def smallest(panel, k=1):
    return tuple(list(panel.spec.sizes)[:k])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_panel_runs_each_op(family):
    p = ComparisonPanel(family)
    p.sizes.value = smallest(p)
    p.repeats.value = 1
    p.run.click()
    backends = p.selected_backends()
    assert backends and p.results
    assert {r["backend"] for r in p.results} == set(backends)
    for r in p.results:
        assert not r.get("error"), r
        assert r["passed"], r
        assert r["ms"] > 0
    assert p.figure is not None and len(p.figure.axes) == 2
    assert "pass" in p.badges.value and "FAIL" not in p.badges.value
    assert "done:" in p.status.value and not p.run.disabled
    assert p.progress.value == 0


def test_panel_several_sizes_and_speedups():
    p = ComparisonPanel("distance", sizes=["n=256 d=3", "n=256 d=64", "n=1024 d=3"], repeats=1)
    p.toggles["max"].value = False
    p.run.click()
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
    assert "mojo" not in {r["backend"] for r in p.results}


def test_backend_that_raises_is_shown_and_panel_stays_usable(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("kernel exploded")

    monkeypatch.setitem(distance_op.impls["torch"].__dict__, "fn", boom)
    p = ComparisonPanel("distance", sizes=["n=256 d=3"], repeats=1)
    p.run.click()
    bad = [r for r in p.results if r["backend"] == "torch"]
    assert bad and "kernel exploded" in bad[0]["error"] and not bad[0]["passed"]
    assert "kernel exploded" in p.status.value
    assert "torch: error" in p.badges.value
    assert all(r["passed"] for r in p.results if r["backend"] != "torch")
    monkeypatch.undo()
    p.run.click()  # the next run works
    assert all(r["passed"] and not r.get("error") for r in p.results)
    assert len(p.history) == 2


def test_no_backend_selected_says_so():
    p = ComparisonPanel("distance")
    for t in p.toggles.values():
        t.value = False
    p.run.click()
    assert "select at least one backend" in p.status.value and not p.run.disabled


def test_auto_choice_is_shown():
    p = ComparisonPanel("distance", sizes=["n=1024 d=64"])
    assert "auto picks" in p.auto.value
    p.sizes.value = ("n=256 d=3", "n=4096 d=64")
    assert p.auto.value.count("auto picks") == 2
