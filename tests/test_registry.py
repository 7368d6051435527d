import numpy as np
import pytest

import aura_lab
from aura_lab import _registry
from aura_lab._registry import BackendStatus, Op


def test_backends_table_has_one_row_per_backend():
    rows = aura_lab.backends()
    assert [r.name for r in rows] == ["numpy", "torch", "mojo", "max"]
    for r in rows:
        assert isinstance(r, BackendStatus)
        assert r.available or r.reason  # unavailable rows always say why
        if r.available:
            assert r.version
    assert rows[0].available and "reference" in str(rows[0])


@pytest.fixture
def toy_op(monkeypatch):
    op = Op("toy", auto_order=("mojo", "torch", "numpy"))
    op.impl("numpy")(lambda x: ("numpy", x))
    op.impl("torch")(lambda x: ("torch", x))
    op.impl("mojo")(lambda x: ("mojo", x))
    yield op
    Op.registry.pop("toy", None)


def _fake_status(monkeypatch, **unavailable):
    real = _registry.backend_status

    def fake(name):
        if name in unavailable:
            return BackendStatus(name, False, "", unavailable[name])
        return real(name)

    monkeypatch.setattr(_registry, "backend_status", fake)


def test_explicit_unavailable_backend_raises_with_reason(toy_op, monkeypatch):
    _fake_status(monkeypatch, mojo="compiler missing")
    with pytest.raises(RuntimeError, match="toy: backend 'mojo' is unavailable: compiler missing"):
        toy_op.run("mojo", 1)
    with pytest.raises(RuntimeError, match=r"toy: backend 'max' is not implemented \(this op has: numpy, torch, mojo\)"):
        toy_op.run("max", 1)
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        toy_op.run("cuda", 1)


def test_auto_falls_back_with_warning_and_records_it(toy_op, monkeypatch):
    _fake_status(monkeypatch, mojo="compiler missing")
    with pytest.warns(aura_lab.AuraFallbackWarning, match=r"auto skipped mojo .*compiler missing"):
        assert toy_op.run("auto", 7) == ("torch", 7)
    rec = aura_lab.last_dispatch()
    assert rec.backend == "torch" and rec.requested == "auto"
    assert rec.fallbacks and "compiler missing" in rec.fallbacks[0]
    assert "ran torch" in str(rec)


def test_auto_falls_back_when_the_backend_fails_to_build(toy_op):
    def broken(x):
        raise _registry.BackendUnavailable("kernel failed to compile: diagnostics here")

    toy_op.impl("mojo")(broken)
    with pytest.warns(aura_lab.AuraFallbackWarning, match="diagnostics here"):
        assert toy_op.run("auto", 1)[0] == "torch"
    with pytest.raises(RuntimeError, match="diagnostics here"):
        toy_op.run("mojo", 1)


def test_use_backend_scopes_auto(toy_op):
    with aura_lab.use_backend("numpy"):
        assert toy_op.run("auto", 1)[0] == "numpy"
        assert toy_op.run("torch", 1)[0] == "torch"  # explicit still wins
    assert toy_op.run("auto", 1)[0] in ("mojo", "torch")
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        with aura_lab.use_backend("nope"):
            pass


def test_explain_names_the_choice(toy_op, monkeypatch):
    _fake_status(monkeypatch, mojo="compiler missing")
    text = toy_op.explain()
    assert text.startswith("toy: auto picks torch") and "skip mojo" in text


def test_errors_inside_a_backend_propagate_unchanged(toy_op):
    def bad(x):
        raise ZeroDivisionError("boom")

    toy_op.impl("numpy")(bad)
    with pytest.raises(ZeroDivisionError, match="boom"):
        toy_op.run("numpy", 1)


def test_array_kinds_round_trip():
    import torch

    X = np.ones((3, 2), np.float32)
    assert isinstance(aura_lab.pairwise_distances(X, backend="numpy"), np.ndarray)
    assert isinstance(aura_lab.pairwise_distances(torch.from_numpy(X), backend="numpy"), torch.Tensor)
