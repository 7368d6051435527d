import os

import numpy as np
import pytest

import aura_lab
from dataclasses import dataclass

from aura_lab import registry
from aura_lab.errors import BackendUnavailable, UnsupportedProblem
from aura_lab.registry import BackendStatus, Op


def test_backends_table_has_one_row_per_backend():
    rows = aura_lab.backends()
    assert [r.name for r in rows] == ["numpy", "torch", "mojo", "max"]
    for r in rows:
        assert isinstance(r, BackendStatus)
        assert r.available or r.reason  # unavailable rows always say why
        if r.available:
            assert r.version
    assert rows[0].available and "reference" in str(rows[0])


@dataclass(frozen=True)
class Toy:
    """A problem: the value, its size for calibration / threads, its device."""

    x: int
    device: str = "cpu"

    @property
    def size(self) -> dict:
        return {"n": self.x}


@pytest.fixture
def toy_op(monkeypatch):
    op = Op("toy", auto_order=("mojo", "torch", "numpy"))
    op.impl("numpy")(lambda p: ("numpy", p.x))
    op.impl("torch")(lambda p: ("torch", p.x))
    op.impl("mojo")(lambda p: ("mojo", p.x))
    yield op
    Op.registry.pop("toy", None)


def _fake_status(monkeypatch, **unavailable):
    real = registry.backend_status

    def fake(name):
        if name in unavailable:
            return BackendStatus(name, False, "", unavailable[name])
        return real(name)

    monkeypatch.setattr(registry, "backend_status", fake)


def test_explicit_unavailable_backend_raises_with_reason(toy_op, monkeypatch):
    _fake_status(monkeypatch, mojo="compiler missing")
    with pytest.raises(RuntimeError, match="toy: backend 'mojo' is unavailable: compiler missing"):
        toy_op.run("mojo", Toy(1))
    with pytest.raises(RuntimeError, match=r"toy: backend 'max' is not implemented \(this op has: numpy, torch, mojo\)"):
        toy_op.run("max", Toy(1))
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        toy_op.run("cuda", Toy(1))


def test_auto_falls_back_with_warning_and_records_it(toy_op, monkeypatch):
    _fake_status(monkeypatch, mojo="compiler missing")
    with pytest.warns(aura_lab.AuraFallbackWarning, match=r"auto skipped mojo .*compiler missing"):
        assert toy_op.run("auto", Toy(7)) == ("torch", 7)
    rec = aura_lab.last_dispatch()
    assert rec.backend == "torch" and rec.requested == "auto"
    assert rec.fallbacks and "compiler missing" in rec.fallbacks[0]
    assert "ran torch" in str(rec)


def test_auto_falls_back_when_the_backend_fails_to_build(toy_op):
    def broken(p):
        raise BackendUnavailable("kernel failed to compile: diagnostics here")

    toy_op.impl("mojo")(broken)
    with pytest.warns(aura_lab.AuraFallbackWarning, match="diagnostics here"):
        assert toy_op.run("auto", Toy(1))[0] == "torch"
    with pytest.raises(RuntimeError, match="diagnostics here"):
        toy_op.run("mojo", Toy(1))


def test_use_backend_scopes_auto(toy_op):
    with aura_lab.use_backend("numpy"):
        assert toy_op.run("auto", Toy(1))[0] == "numpy"
        assert toy_op.run("torch", Toy(1))[0] == "torch"  # explicit still wins
    assert toy_op.run("auto", Toy(1))[0] in ("mojo", "torch")
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        with aura_lab.use_backend("nope"):
            pass


def test_explain_names_the_choice(toy_op, monkeypatch):
    _fake_status(monkeypatch, mojo="compiler missing")
    text = toy_op.explain()
    assert text.startswith("toy: auto picks torch") and "skip mojo" in text


def test_errors_inside_a_backend_propagate_unchanged(toy_op):
    def bad(p):
        raise ZeroDivisionError("boom")

    toy_op.impl("numpy")(bad)
    with pytest.raises(ZeroDivisionError, match="boom"):
        toy_op.run("numpy", Toy(1))


def test_array_kinds_round_trip():
    import torch

    X = np.ones((3, 2), np.float32)
    assert isinstance(aura_lab.pairwise_distances(X, backend="numpy"), np.ndarray)
    assert isinstance(aura_lab.pairwise_distances(torch.from_numpy(X), backend="numpy"), torch.Tensor)


def test_limits_on_the_impl_raise_for_explicit_and_fall_back_under_auto(toy_op):
    def limit(p):
        if p.x > 10:
            raise UnsupportedProblem(f"x: the toy mojo kernel takes x <= 10, got {p.x}")

    toy_op.impl("mojo", check=limit)(lambda p: ("mojo", p.x))
    assert toy_op.run("mojo", Toy(3)) == ("mojo", 3)
    with pytest.raises(UnsupportedProblem, match="x: the toy mojo kernel takes x <= 10, got 11"):
        toy_op.run("mojo", Toy(11))
    with pytest.warns(aura_lab.AuraFallbackWarning, match=r"auto skipped mojo \(x: the toy mojo kernel"):
        assert toy_op.run("auto", Toy(11))[0] == "torch"
    assert "x <= 10" in aura_lab.last_dispatch().fallbacks[0]


def test_explicit_backend_keeps_the_precise_error_type(toy_op):
    from aura_lab.errors import MojoBuildError

    def broken(p):
        raise MojoBuildError("toy", ["mojo", "build"], "error: something")

    toy_op.impl("mojo")(broken)
    with pytest.raises(MojoBuildError, match="mojo build of kernels/toy.mojo failed"):
        toy_op.run("mojo", Toy(1))


def test_thread_policy(monkeypatch):
    monkeypatch.setenv("AURA_NUM_THREADS", "3")
    assert registry.threads_for(registry.SERIAL_NS / 2) == 1
    assert registry.threads_for(registry.SERIAL_NS) == 3
    op = Op("toy_threads", ns_per_work=2.0)
    try:
        assert op.threads({"n": registry.SERIAL_NS // 4}) == 1 and op.threads({"n": registry.SERIAL_NS}) == 3
    finally:
        Op.registry.pop("toy_threads")


@pytest.mark.parametrize("value, expect", [("", "cores"), ("0", "cores"), ("1", 1), (" 2 ", 2), ("100000", "clamp")])
def test_num_threads_setting(monkeypatch, value, expect):
    cores = os.cpu_count() or 1
    monkeypatch.setenv("AURA_NUM_THREADS", value)
    want = {"cores": cores, "clamp": registry.THREADS_PER_CORE_MAX * cores}.get(expect, expect)
    assert registry.num_threads() == want


@pytest.mark.parametrize("value, match", [("abc", "expected an integer number of threads"), ("-1", "must be >= 0"),
                                          ("1.5", "expected an integer")])
def test_bad_num_threads_setting_names_the_variable(monkeypatch, value, match):
    monkeypatch.setenv("AURA_NUM_THREADS", value)
    with pytest.raises(ValueError, match=f"AURA_NUM_THREADS: {match}"):
        registry.num_threads()
    if registry.backend_status("mojo").available:  # and so does every kernel call, small ones too
        with pytest.raises(ValueError, match="AURA_NUM_THREADS"):
            aura_lab.pairwise_distances(np.ones((3, 2)), backend="mojo")
