"""Load (issue 15, item 4): every public op x backend from 8 threads at once gives the serial
results bit for bit, and a soak of many calls in a row leaves RSS flat (no leaked buffers,
no per-call records, threads or compiled models piling up)."""

from __future__ import annotations

import numpy as np
import pytest

from aura_lab.harness import load as L

from .conftest import backend_params


def _pairs():
    return [pytest.param(case, p.values[0], marks=p.marks, id=f"{case.name}-{p.values[0]}")
            for case in L.CASES for p in backend_params(case.registry_op) if p.values[0] not in case.skip]


PAIRS = _pairs()
SOAK_CALLS = 1000


@pytest.mark.parametrize("case,backend", PAIRS)
def test_eight_threads_match_serial(case, backend):
    r = L.threads_check(case, backend, threads=8, calls=16)
    assert r["error"] == ""
    assert r["calls"] == 16 and r["identical"], r


@pytest.mark.parametrize("case,backend", PAIRS)
def test_soak_leaves_rss_flat(case, backend):
    r = L.soak(case, backend, calls=SOAK_CALLS)
    assert r["growth_pct"] <= L.MAX_GROWTH_PCT, r
    assert r["kib_per_call"] <= L.MAX_KIB_PER_CALL, r
    # nothing recorded per call: one tracked Python object per 100 calls would already show
    assert r["objects"] < SOAK_CALLS // 100, r
    assert r["os_threads"] <= 0 and r["max_models"] == 0 and r["compile_log"] == 0, r


@pytest.mark.parametrize("nbytes", [2048, 128 << 10])
def test_soak_catches_a_leaked_buffer(nbytes):
    """The soak's criteria fail on a buffer kept per call (2 KiB: by the per-call growth;
    128 KiB: by the 5 %)."""
    kept = []

    def leaky(backend, X):
        kept.append(np.ones(nbytes // 8))
        return L._distance(backend, X)

    r = L.soak(L.Case("leaky", "distance", L._distance_inputs, leaky), "numpy", calls=SOAK_CALLS)
    assert r["kib_per_call"] > L.MAX_KIB_PER_CALL, r
    if nbytes > 64 << 10:
        assert r["growth_pct"] > L.MAX_GROWTH_PCT, r


def test_soak_catches_a_record_per_call():
    kept = []

    def recording(backend, X):
        kept.append({"call": len(kept)})
        return L._distance(backend, X)

    r = L.soak(L.Case("recording", "distance", L._distance_inputs, recording), "numpy", calls=SOAK_CALLS)
    assert r["objects"] >= SOAK_CALLS // 2, r


def test_threads_check_catches_a_wrong_result():
    """A call whose result depends on which thread runs it is reported, not hidden."""
    import threading

    def racy(backend, X):
        d = L._distance(backend, X)
        return d if threading.current_thread() is threading.main_thread() else d + 1

    r = L.threads_check(L.Case("racy", "distance", L._distance_inputs, racy), "numpy", threads=4, calls=8, large=False)
    assert not r["identical"] and r["mismatches"] == 8


def test_arrays_flattens_every_result_kind():
    case = L.CASE["rips_persistence (reps)"]
    if "mojo" not in case.backends():
        pytest.skip("mojo unavailable")
    res = case.call("mojo", *case.inputs(0))
    out = L.arrays(res)
    n_chains = sum(len(d) for d in res.cycles) + sum(len(d) for d in res.cocycles)
    assert len(out) == len(res.dgms) + 2 * n_chains
    assert not L.identical(out, out[:-1]) and L.identical(out, [a.copy() for a in out])
