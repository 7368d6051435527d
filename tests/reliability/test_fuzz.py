"""The fuzzer (aura_lab.harness.fuzz): every stored failing spec passes now, a short
derandomized run finds nothing, and the fuzzer itself tells a crash, a hang, a leaked
exception and a wrong result from a pass."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aura_lab import cli
from aura_lab.harness import fuzz as F

REGRESSIONS = F.load_regressions(Path(__file__).resolve().parents[1] / "data" / "fuzz_regressions.json")


@pytest.fixture(scope="module")
def worker():
    w = F.Worker(timeout=120)
    yield w
    w.close()


@pytest.mark.parametrize("entry", REGRESSIONS, ids=[f"{i}-{r['spec']['op']}" for i, r in enumerate(REGRESSIONS)])
def test_stored_regression_passes(worker, entry):
    spec = entry["spec"]
    assert F.verdict(spec, worker.run(spec)) is None, f"was: {entry['found']}\n{json.dumps(spec)}"


def test_short_run_finds_nothing(worker):
    report = F.fuzz(examples=300, seed=0, worker=worker)
    assert report.failures == [], report.summary()
    assert set(report.per_op) == set(F.OPS)  # every op drawn
    assert sum(report.returned.values()) > report.cases // 4  # most cases reach a backend


def test_a_valid_case_returns_the_documented_shapes(worker):
    spec = {"op": "selective_scan", "backend": "numpy", "seed": 3,
            "args": {n: {"$array": {"dtype": "float32", "shape": s, "fill": f, "layout": "c", "container": "numpy"}}
                     for n, s, f in (("x", [1, 4, 2, 3], "normal"), ("dt", [1, 4, 2], "pos"), ("A", [2], "neg"),
                                     ("B", [1, 4, 1, 2], "normal"), ("C", [1, 4, 1, 2], "normal"))}}
    spec["args"]["return_final_states"] = True
    assert worker.run(spec) == {"ok": True, "problems": []}


def test_wrong_shapes_dtypes_and_kinds_are_reported():
    p = []
    F._check_array(p, "y", __import__("numpy").zeros((2, 3), "float32"), (2, 4), "float64", "torch")
    assert p == ["y kind: expected torch, got numpy", "y shape: expected (2, 4), got (2, 3)",
                 "y dtype: expected float64, got float32"]


def test_a_signal_and_a_hang_are_failures():
    crash = F.Worker(timeout=30, child="import os, signal, sys; sys.stdin.readline(); os.kill(os.getpid(), signal.SIGSEGV)")
    assert F.verdict({}, crash.run({"op": "route"})) == "child died: signal 11"
    hang = F.Worker(timeout=1, child="import sys, time; sys.stdin.readline(); time.sleep(60)")
    assert F.verdict({}, hang.run({"op": "route"})) == "hang: no result within 1 s"
    assert hang.proc is None  # killed


@pytest.mark.parametrize("outcome, passes", [
    ({"raised": "ValueError", "mro": ["ValueError"], "message": "A: must be <= 0"}, True),
    ({"raised": "ValueError", "mro": ["ValueError"], "message": "B, C: h must be a multiple of g"}, True),
    ({"raised": "ValueError", "mro": ["ValueError"], "message": "A real array is needed"}, False),
    ({"raised": "TypeError", "mro": ["TypeError"], "message": "'NoneType' object is not iterable"}, False),
    ({"raised": "AttributeError", "mro": ["AttributeError"], "message": "x: no attribute ndim"}, False),
    ({"raised": "Cancelled", "mro": ["Cancelled", "KeyboardInterrupt"], "message": "x: stopped"}, False),
    ({"raised": "MojoUnavailable", "mro": ["MojoUnavailable", "BackendUnavailable"], "message": "no mojo"}, True),
    ({"ok": True, "problems": ["y shape: expected (1,), got (2,)"]}, False),
])
def test_verdict(outcome, passes):
    spec = {"op": "selective_scan", "args": {"x": None, "A": None, "B": None, "C": None}}
    assert (F.verdict(spec, outcome) is None) == passes


def test_fuzz_command(capsys, tmp_path):
    rc = cli.main(["fuzz", "--minutes", "0.01", "--ops", "betti_curves", "--save", str(tmp_path / "f.json"),
                   "--json", str(tmp_path / "run.json")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "cases tried: " in out and "failures found: 0" in out
    run = json.loads((tmp_path / "run.json").read_text())
    assert f"cases tried: {run['cases']}" in out and run["cases"] == run["per_op"]["betti_curves"] > 0
    assert run["failures"] == [] and run["context"]["ops"] == ["betti_curves"]
    assert 0 <= run["returned"].get("betti_curves", 0) <= run["cases"]


def test_an_input_written_in_place_is_reported(monkeypatch):
    def scribble(X, backend="auto"):
        X[0] = 7.0
        return X

    monkeypatch.setitem(F.OPS, "scribble", F.OpInfo(scribble, ("numpy",), {"X": (("n",), "normal", True)}, {},
                                                     lambda spec, res, args: []))
    spec = {"op": "scribble", "backend": "numpy", "seed": 0,
            "args": {"X": {"$array": {"dtype": "float64", "shape": [3], "fill": "zeros", "container": "numpy"}}}}
    assert F.run_case(spec) == {"ok": True, "problems": ["X: input written in place"]}
