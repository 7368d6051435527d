"""Edge collapse (aura_lab/persistence/collapse.py, kernels/aura_kernels/persistence/collapse.mojo):
the diagrams with collapse equal those without (bars with death > birth), on the quick standard
sets and on hypothesis clouds with ties and duplicates; gudhi as an independent reference (its
reduce_graph's edge counts, its Rips persistence over Z/2); the collapsed filtration's
invariants; cycles of the collapsed filtration against the representatives' oracle on the
original complex; bad input; cancellation."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aura_lab
from aura_lab import persistence as P
from aura_lab.distance import pairwise_distances
from aura_lab.errors import Cancelled
from aura_lab.harness.persistence import load_standard_set
from aura_lab.neighbors import radius_graph
from aura_lab.persistence import collapse as C
from aura_lab.registry import last_dispatch

from .test_persistence_reps import RipsOracle, check_cycles, critical_values, threshold_of

needs_mojo = pytest.mark.requires("mojo")
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def same_bars(a, b):
    assert len(a) == len(b)
    for k, (x, y) in enumerate(zip(a, b)):
        assert x.shape == y.shape and np.array_equal(x, y), f"H{k}: {x.shape[0]} vs {y.shape[0]} bars differ"


def both(X, **kw):
    on = P.rips_persistence(X, backend="mojo", collapse_edges=True, **kw)
    stats = P.last_stats()
    off = P.rips_persistence(X, backend="mojo", collapse_edges=False, **kw)
    return on, off, stats


# ------------------------------------------------------------------------------ standard sets

@needs_mojo
@pytest.mark.parametrize("name", ["o3_1024", "random16"])
def test_standard_sets(name):
    X, kw, counts = load_standard_set(name)
    on, off, stats = both(X, progress=False, **kw)
    same_bars(on, off)
    assert [len(d) for d in on] == counts[:len(on)] + [0] * (len(on) - len(counts))
    c = stats["collapse"]
    assert c["edges_after"][-1] < c["edges_before"] and 1 <= c["passes"] <= C.MAX_PASSES


@pytest.mark.requires("mojo", "gudhi")
def test_o3_1024_first_pass_as_gudhi():
    """ph-scale.md §2: 33,189 -> 12,457 edges after one pass (gudhi reduce_graph); later passes
    depend on the order of equal values, so only close."""
    import gudhi.flag_filtration.edge_collapse as gudhi_ec
    import scipy.sparse as sp

    X, kw, _ = load_standard_set("o3_1024")
    i, j, d = C.upper_pairs(*radius_graph(X, kw["threshold"]))
    assert d.size == 33189
    one = C.collapse_edges(len(X), i, j, d, max_passes=1)
    assert one[0].size == 12457 == gudhi_ec.reduce_graph(sp.coo_matrix((d, (i, j)), shape=(len(X),) * 2), 1).nnz
    three = C.collapse_edges(len(X), i, j, d, max_passes=3, min_removed=0.0)
    ref = gudhi_ec.reduce_graph(sp.coo_matrix((d, (i, j)), shape=(len(X),) * 2), 3).nnz
    assert abs(three[0].size - ref) <= 0.02 * ref


# ------------------------------------------------------------------------------ random clouds

@needs_mojo
@SETTINGS
@given(st.integers(5, 14), st.sampled_from([2, 3]), st.integers(1, 4), st.booleans(), st.integers(0, 2 ** 31))
def test_clouds_with_ties_and_duplicates(n, coeff, maxdim, capped, seed):
    """Integer points in a small grid: many equal distances and repeated points."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, size=(n, 2)).astype(np.float64)
    thr = float(np.sqrt(2.0)) if capped else np.inf
    on, off, _ = both(X, maxdim=maxdim, coeff=coeff, threshold=thr)
    same_bars(on, off)


@needs_mojo
@SETTINGS
@given(st.integers(5, 12), st.sampled_from([2, 3]), st.integers(1, 4), st.sampled_from([np.inf, 3.0, 2.0]),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2 ** 31))
def test_distance_matrices_with_ties(n, coeff, maxdim, thr, dtype, seed):
    rng = np.random.default_rng(seed)
    A = rng.integers(1, 5, size=(n, n)).astype(dtype)
    D = np.triu(A, 1) + np.triu(A, 1).T
    on, off, _ = both(D, maxdim=maxdim, coeff=coeff, threshold=thr, distance_matrix=True)
    same_bars(on, off)


@pytest.mark.requires("mojo", "gudhi")
@pytest.mark.parametrize("seed", range(3))
def test_against_gudhi(seed):
    """gudhi's Rips persistence over Z/2 (its own collapse and engine) as the independent reference."""
    X = np.random.default_rng(seed).standard_normal((60, 3))
    ours = P.rips_persistence(X, maxdim=3, threshold=1.5, backend="mojo", collapse_edges=True)
    ref = P.rips_persistence(X, maxdim=3, threshold=1.5, backend="gudhi")
    for a, b in zip(ours, ref):
        assert a.shape == b.shape and np.allclose(a, b, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------ the kernel

@needs_mojo
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_collapsed_filtration_invariants(dtype):
    """Kept edges are input edges with values >= their input values, each once, i < j,
    decreasing values; the flag filtration of the output (as sparse input) has the same bars."""
    rng = np.random.default_rng(1)
    X = rng.random((80, 2)).astype(dtype)
    i, j, d = C.upper_pairs(*radius_graph(X, 0.3))
    ci, cj, cd, stats = C.collapse_edges(80, j, i, d)  # reversed ends: any orientation is taken
    assert cd.dtype == d.dtype and ci.dtype == cj.dtype == np.int32
    assert np.all(ci < cj) and np.all(np.diff(cd) <= 0)
    key = dict(zip(zip(i.tolist(), j.tolist()), d.tolist()))
    assert len(set(zip(ci.tolist(), cj.tolist()))) == ci.size
    assert all(key[(a, b)] <= f for a, b, f in zip(ci.tolist(), cj.tolist(), cd.tolist()))
    assert stats["edges_before"] == d.size and stats["edges_after"][-1] == ci.size
    full = P.rips_persistence((i, j, d), distance_matrix=True, maxdim=2, collapse_edges=False)
    small = P.rips_persistence((ci, cj, cd), distance_matrix=True, maxdim=2, collapse_edges=False)
    # the collapsed list has the same (nonzero) bars; the enclosing-radius cap does not apply
    # (0.3-graph: no vertex adjacent to all)
    same_bars(full, small)



@needs_mojo
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_path_gives_the_same_edges(dtype):
    """collapse_in_place (rips_persistence's path: the kernel's output over its input arrays,
    no validation copies) keeps exactly the edges collapse_edges keeps, in the same order, and
    leaves collapse_edges' own int32 input untouched."""
    rng = np.random.default_rng(2)
    X = rng.random((300, 3)).astype(dtype)
    i, j, d = C.upper_pairs(*radius_graph(X, 0.3))
    keep = (i.copy(), j.copy(), d.copy())
    ci, cj, cd, stats = C.collapse_edges(300, i, j, d)
    assert all(np.array_equal(a, b) for a, b in zip((i, j, d), keep))
    k, stats2 = C.collapse_in_place(300, i, j, d)
    assert k == ci.size < d.size and stats2["edges_after"] == stats["edges_after"]
    assert np.array_equal(i[:k], ci) and np.array_equal(j[:k], cj) and np.array_equal(d[:k], cd)


def test_in_place_path_bad_input():
    i, j, d = np.array([0, 1], np.int32), np.array([1, 2], np.int32), np.array([1.0, 2.0])
    with pytest.raises(TypeError, match="i: expected a writeable contiguous"):
        C.collapse_in_place(3, i.astype(np.int64), j, d)
    with pytest.raises(TypeError, match="d: expected"):
        C.collapse_in_place(3, i, j, d[:1])
    with pytest.raises(ValueError, match=r"on \[0, 2\)"):
        C.collapse_in_place(2, i, j, d)
    with pytest.raises(ValueError, match="self loops"):
        C.collapse_in_place(3, i, i.copy(), d)

@needs_mojo
def test_passes_stop_below_min_removed():
    X, kw, _ = load_standard_set("o3_1024")
    i, j, d = C.upper_pairs(*radius_graph(X, kw["threshold"]))
    out = C.collapse_edges(len(X), i, j, d)[3]
    after = [out["edges_before"], *out["edges_after"]]
    removed = [(a - b) / a for a, b in zip(after, after[1:])]
    assert all(r >= C.MIN_REMOVED for r in removed[:-1])
    assert removed[-1] < C.MIN_REMOVED or out["passes"] == C.MAX_PASSES


@needs_mojo
def test_each_pass_is_timed_and_described():
    X, kw, _ = load_standard_set("o3_1024")
    out = C.collapse_edges(len(X), *C.upper_pairs(*radius_graph(X, kw["threshold"])))[3]
    assert out["passes"] > 1 and len(out["pass_seconds"]) == out["passes"]
    assert all(s > 0 for s in out["pass_seconds"]) and sum(out["pass_seconds"]) <= out["seconds"]
    line = C.describe(out)
    per_pass = line.split("after each pass: ")[1].rstrip(")").split(", ")
    assert [int(p.split(" in ")[0]) for p in per_pass] == out["edges_after"]
    assert line.startswith(f"edge collapse: {out['edges_before']} -> {out['edges_after'][-1]} edges in {out['passes']} passes")


def test_empty_and_edgeless():
    i, j, d, s = C.collapse_edges(4, [], [], np.zeros(0))
    assert i.size == 0 and s["passes"] == 0


# ------------------------------------------------------------------------------ the switch

@needs_mojo
def test_auto_rule_and_reason():
    X = np.random.default_rng(0).standard_normal((40, 3))
    P.rips_persistence(X, maxdim=1)
    assert "edge collapse" not in last_dispatch().reason
    P.rips_persistence(X, maxdim=2)
    assert "edge collapse" not in last_dispatch().reason  # dense maxdim 2: off
    P.rips_persistence(X, maxdim=3)
    assert "edge collapse" in last_dispatch().reason and "collapse" in P.last_stats()
    P.rips_persistence(X, maxdim=3, return_cycles=True)
    assert "edge collapse" not in last_dispatch().reason
    P.rips_persistence(X, maxdim=1, collapse_edges=True)
    assert "edge collapse" in last_dispatch().reason


def test_resolve():
    assert C.resolve("auto", 3, False, False)[0] and not C.resolve("auto", 1, False, False)[0]
    assert C.resolve("auto", 2, False, False, sparse=True)[0] and not C.resolve("auto", 2, False, False)[0]
    assert not C.resolve("auto", 3, True, False)[0] and not C.resolve("auto", 3, False, True)[0]
    assert C.resolve(True, 0, True, False)[0] and not C.resolve(False, 5, False, False)[0]


@pytest.mark.parametrize("bad", ["yes", 1, 0, None, "True", 2.0])
def test_collapse_edges_must_be_bool_or_auto(bad):
    with pytest.raises(TypeError, match="collapse_edges"):
        P.rips_persistence(np.zeros((3, 2)), collapse_edges=bad)


def test_cocycles_refused_with_collapse():
    with pytest.raises(ValueError, match="cocycles of the collapsed filtration"):
        P.rips_persistence(np.random.default_rng(0).random((6, 2)), collapse_edges=True, return_cocycles=True)


@needs_mojo
@SETTINGS
@given(st.integers(5, 9), st.sampled_from([2, 3]), st.sampled_from([1, 2]), st.booleans(), st.integers(0, 2 ** 31))
def test_cycles_with_collapse_pass_the_oracle_on_the_original_complex(n, coeff, maxdim, capped, seed):
    """Cycles of K' (K'_t ⊆ K_t, homotopy equivalent) are cycles of K: checked by the Z/p
    oracle of test_persistence_reps on the original complex."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, size=(n, 2)).astype(np.float64) + rng.random((n, 2)) * 0.01 * (seed % 2)
    thr = float(np.sqrt(2.0)) if capped else np.inf
    res = P.rips_persistence(X, maxdim=maxdim, coeff=coeff, threshold=thr, backend="mojo", return_cycles=True,
                             collapse_edges=True)
    plain = P.rips_persistence(X, maxdim=maxdim, coeff=coeff, threshold=thr, backend="mojo", collapse_edges=False)
    same_bars(res.dgms, plain)
    D = pairwise_distances(X).astype(np.float64)
    orc = RipsOracle(D, threshold_of(D, thr), maxdim + 1)
    ts = critical_values(orc)
    for k in range(maxdim + 1):
        check_cycles(orc, k, res.dgms[k], res.cycles[k], coeff, ts)


# ------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("args, err, match", [
    ((3, [0], [0], [1.0]), ValueError, "self loop"),
    ((3, [0, 1], [1, 0], [1.0, 1.0]), ValueError, "twice"),
    ((3, [0], [3], [1.0]), ValueError, r"\[0, 3\)"),
    ((3, [0], [-1], [1.0]), ValueError, r"\[0, 3\)"),
    ((3, [0], [1], np.array([1], np.int64)), TypeError, "float32 or float64"),
    ((3, [0], [1], [np.nan]), ValueError, "finite"),
    ((3, [0], [1, 2], [1.0]), ValueError, "equal lengths"),
    ((3, [0.0], [1.0], [1.0]), TypeError, "integer vertex ids"),
    ((-1, [], [], np.zeros(0)), ValueError, "n:"),
    ((2.0, [], [], np.zeros(0)), TypeError, "n:"),
    ((3, [[0]], [[1]], [[1.0]]), ValueError, "1-D"),
])
def test_bad_edge_lists(args, err, match):
    n, i, j, d = args
    with pytest.raises(err, match=match):
        C.collapse_edges(n, i, j, np.asarray(d) if not isinstance(d, np.ndarray) else d)


def test_bad_passes():
    with pytest.raises(ValueError, match="max_passes"):
        C.collapse_edges(3, [0], [1], [1.0], max_passes=0)
    with pytest.raises(ValueError, match="min_removed"):
        C.collapse_edges(3, [0], [1], [1.0], min_removed=2.0)


# ------------------------------------------------------------------------------ cancellation

def _long_edge_list():
    """A complete graph on 1500 vertices with distinct values (1.1 M edges): far more than a second
    of collapse (dense graphs are its worst case: every edge has ~n common neighbours)."""
    n = 1500
    i, j = np.triu_indices(n, 1)
    d = np.random.default_rng(0).random(i.size)
    return n, i, j, d


@needs_mojo
def test_cancellable_stops_a_long_collapse():
    n, i, j, d = _long_edge_list()
    with aura_lab.cancellable() as ctl:
        threading.Timer(0.5, ctl.cancel).start()
        t0 = time.perf_counter()
        with pytest.raises(Cancelled):
            C.collapse_edges(n, i, j, d)
        assert time.perf_counter() - t0 < 5.0
    small = C.collapse_edges(4, [0, 1, 2, 0], [1, 2, 3, 3], np.array([1.0, 1.0, 1.0, 1.0]))
    assert small[0].size == 4  # the square: a 1-cycle, nothing to collapse


# ------------------------------------------------------------------------------ collections

@needs_mojo
def test_collection_and_estimator_forward_collapse_edges():
    from aura_lab.collection import collection_persistence
    from aura_lab.estimators import RipsPersistence

    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((30, 3)) for _ in range(3)]
    on = collection_persistence(xs, homology_dimensions=[0, 1, 2], collapse_edges=True)
    off = collection_persistence(xs, homology_dimensions=[0, 1, 2], collapse_edges=False)
    for a, b in zip(on, off):
        same_bars(a, b)
    est = RipsPersistence(homology_dimensions=[0, 1, 2], collapse_edges=False)
    assert est.get_params()["collapse_edges"] is False
    for a, b in zip(est.fit_transform(xs), off):
        same_bars(a, b)
    with pytest.raises(TypeError, match="collapse_edges"):
        RipsPersistence(collapse_edges="never").fit(xs)
