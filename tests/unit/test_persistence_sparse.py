"""The mojo engine's sparse mode (the radius graph in CSR form, cofacets from the intersection
of neighbour lists) against its dense mode (the full matrix, SIMD row scans), the Z/p
representative oracle of test_persistence_reps and ripser.py; its CSR validation, and
cancellation and the memory budget in sparse mode.

The engine is chosen through the module switch ``persistence.kernels._ENGINE`` (internal)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aura_lab
from aura_lab import _arrays
from aura_lab import persistence as P
from aura_lab.persistence import estimate, graph, kernels, problem
from aura_lab.distance import pairwise_distances
from aura_lab.errors import Cancelled

from .test_persistence_reps import check_all, noisy_circle, threshold_of

needs_mojo = pytest.mark.requires("mojo")
pytestmark = needs_mojo


def run(X, engine: str, **kw):
    """rips_persistence on the mojo backend with the engine forced to ``engine``."""
    old = kernels._ENGINE
    kernels._ENGINE = engine
    try:
        out = P.rips_persistence(X, backend="mojo", progress=False, **kw)
    finally:
        kernels._ENGINE = old
    assert P.last_stats()["engine"] == engine
    return out


def tied_cloud(seed: int, n: int, d: int = 3, dups: int = 4) -> np.ndarray:
    """Points on a small integer grid (many equal distances) with a few exact duplicates."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 4, size=(n - dups, d)).astype(np.float64)
    return np.concatenate([X, X[rng.integers(0, n - dups, dups)]])


def assert_equal_dgms(a, b):
    assert len(a) == len(b)
    for k, (x, y) in enumerate(zip(a, b)):
        assert x.shape == y.shape, f"H{k}: {x.shape[0]} bars vs {y.shape[0]}"
        assert np.array_equal(x, y), f"H{k} differs"


def bottleneck(a: np.ndarray, b: np.ndarray) -> float:
    import gudhi

    return gudhi.bottleneck_distance(a, b)


# ------------------------------------------------------------------------------ dense vs sparse, exact

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("coeff", [2, 3])
@pytest.mark.parametrize("maxdim", [1, 2, 3])
@pytest.mark.parametrize("where", ["at_a_distance", "between", "inf"])
def test_sparse_equals_dense_on_ties_and_duplicates(dtype, coeff, maxdim, where):
    """Bar for bar equal on the same matrix: grid points (ties), duplicates (zero distances),
    a threshold exactly at a distance, between distances, and none (the enclosing radius)."""
    X = tied_cloud(seed=maxdim * 10 + coeff, n=36 if maxdim < 3 else 26)
    D = pairwise_distances(X).astype(dtype)
    vals = np.unique(D[D > 0])
    thr = {"at_a_distance": float(vals[len(vals) // 3]), "between": float(vals[len(vals) // 3]) * 1.01, "inf": np.inf}[where]
    kw = dict(maxdim=maxdim, coeff=coeff, threshold=thr, distance_matrix=True)
    assert_equal_dgms(run(D, "sparse", **kw), run(D, "dense", **kw))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10 ** 6), n=st.integers(2, 30), maxdim=st.integers(1, 3), coeff=st.sampled_from([2, 3]),
       f32=st.booleans(), q=st.floats(0.05, 1.0))
def test_sparse_equals_dense_hypothesis(seed, n, maxdim, coeff, f32, q):
    X = tied_cloud(seed, n, d=2 + seed % 3, dups=min(3, n // 2))
    D = pairwise_distances(X).astype(np.float32 if f32 else np.float64)
    vals = np.unique(D)
    thr = float(vals[int(q * (len(vals) - 1))])  # always one of the distances
    kw = dict(maxdim=maxdim, coeff=coeff, threshold=thr, distance_matrix=True)
    assert_equal_dgms(run(D, "sparse", **kw), run(D, "dense", **kw))


# ------------------------------------------------------------------------------ point clouds (radius graph)

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threshold", [0.6, 1.1])
@pytest.mark.parametrize("maxdim,coeff", [(1, 2), (2, 3), (3, 2)])
@pytest.mark.parametrize("metric", ["euclidean", "cityblock"])
def test_point_cloud_graph_matches_dense(dtype, threshold, maxdim, coeff, metric):
    """A cloud with a finite threshold: its radius graph (neighbors.radius_graph: distances bit
    for bit the dense matrix's) gives the dense engine's diagrams exactly, duplicates included."""
    X = np.random.default_rng(maxdim).standard_normal((150 if maxdim < 3 else 70, 3)).astype(dtype)
    X[-3:] = X[:3]  # duplicates
    kw = dict(maxdim=maxdim, coeff=coeff, threshold=threshold, metric=metric)
    assert_equal_dgms(run(X, "sparse", **kw), run(X, "dense", **kw))


def test_sparse_graph_of_a_point_cloud_is_the_thresholded_matrix():
    X = np.random.default_rng(3).standard_normal((200, 4))
    prob = problem._validate(X, 2, 1.0, "euclidean", False, 2)
    indptr, indices, dists, thr = graph._sparse_graph(prob)
    assert thr == 1.0
    D = pairwise_distances(X)
    ref = graph._csr_from_dense(D, thr)
    assert np.array_equal(indptr, ref[0]) and np.array_equal(indices, ref[1])
    assert np.array_equal(dists, ref[2])


def test_auto_runs_a_large_thresholded_cloud_sparse_and_a_near_complete_one_dense():
    """``engine="auto"``: a point cloud of n >= SPARSE_MIN_N with a finite threshold runs on its
    radius graph (no (n, n) matrix) with the dense engine's bars; one whose graph holds more
    than SPARSE_MAX_DENSITY of the pairs, a small one, or one without a threshold, dense."""
    import aura_lab

    rng = np.random.default_rng(5)
    X = rng.random((P.SPARSE_MIN_N, 3)).astype(np.float32)
    got = P.rips_persistence(X, maxdim=1, threshold=0.08, backend="mojo", progress=False)
    assert P.last_stats()["engine"] == "sparse"
    assert "finite threshold" in aura_lab.last_dispatch().reason
    assert_equal_dgms(got, run(X, "dense", maxdim=1, threshold=0.08))
    P.rips_persistence(X, maxdim=1, threshold=1.0, backend="mojo", progress=False)
    assert P.last_stats()["engine"] == "dense" and "of all pairs" in aura_lab.last_dispatch().reason
    P.rips_persistence(X[:100], maxdim=1, threshold=0.08, backend="mojo", progress=False)
    assert P.last_stats()["engine"] == "dense"
    P.rips_persistence(X[:1100], maxdim=0, backend="mojo", progress=False)
    assert P.last_stats()["engine"] == "dense"


# ------------------------------------------------------------------------------ representatives

@pytest.mark.parametrize("coeff", [2, 3])
@pytest.mark.parametrize("case", ["circle", "cloud"])
def test_sparse_engine_representatives_pass_the_oracle(coeff, case):
    if case == "circle":
        D, maxdim, thr = pairwise_distances(noisy_circle(12, seed=coeff)), 1, 1.2
    else:
        D, maxdim, thr = pairwise_distances(tied_cloud(coeff, 13)), 2, 2.3
    D = np.asarray(D, np.float64)
    kw = dict(maxdim=maxdim, coeff=coeff, threshold=thr, distance_matrix=True)
    res = run(D, "sparse", return_cycles=True, return_cocycles=True, **kw)
    assert_equal_dgms(res.dgms, run(D, "dense", **kw))
    check_all(D, res, maxdim, threshold_of(D, thr), coeff)


# ------------------------------------------------------------------------------ sparse input vs ripser.py

@pytest.mark.requires("ripser")
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fmt", ["coo", "csr"])
def test_sparse_input_on_the_sparse_engine_matches_ripser(seed, fmt):
    import ripser
    from scipy import sparse

    from .test_persistence_inputs import assert_same_diagrams

    rng = np.random.default_rng(seed)
    n = 60
    i, j = np.triu_indices(n, 1)
    keep = rng.random(i.size) < 0.15
    d = np.round(rng.random(keep.sum()), 2)  # ties
    M = sparse.coo_matrix((d, (i[keep], j[keep])), shape=(n, n)).asformat(fmt)
    ours = P.rips_persistence(M, maxdim=2, distance_matrix=True, backend="mojo")
    assert P.last_stats()["engine"] == "sparse"  # auto: 15% of the pairs
    assert "sparse engine: sparse input with" in aura_lab.last_dispatch().reason
    assert_same_diagrams(ours, ripser.ripser(M, maxdim=2, distance_matrix=True)["dgms"])
    assert_equal_dgms(run(M, "dense", maxdim=2, distance_matrix=True), ours)


def test_auto_keeps_near_complete_sparse_input_dense():
    from scipy import sparse

    D = pairwise_distances(np.random.default_rng(0).standard_normal((30, 3)))
    P.rips_persistence(sparse.coo_matrix(np.triu(D, 1)), maxdim=1, distance_matrix=True, backend="mojo")
    assert P.last_stats()["engine"] == "dense"


# ------------------------------------------------------------------------------ validation, cancellation, memory

def _prob(n=5):
    return problem._validate(np.random.default_rng(0).standard_normal((n, 2)), 1, 1.0, "euclidean", False, 2)


def _good_csr():
    # path 0 - 1 - 2 and the isolated vertices 3, 4
    return (np.array([0, 1, 3, 4, 4, 4], np.int64), np.array([1, 0, 2, 1], np.int32), np.array([0.5, 0.5, 0.7, 0.7]))


@pytest.mark.parametrize("bad,match", [
    (lambda p, i, d: (p.astype(np.int32), i, d), "indptr, indices: expected int64"),
    (lambda p, i, d: (p, i.astype(np.int64), d), "indptr, indices: expected int64"),
    (lambda p, i, d: (p, i, d.astype(np.int64)), "dists: expected float32"),
    (lambda p, i, d: (p[:-1], i, d), "indptr: expected 6"),
    (lambda p, i, d: (p, i[:-1], d[:-1]), "indices, dists: expected indptr"),
    (lambda p, i, d: (p, np.array([1, 0, 2, 7], np.int32), d), r"indices: vertices must lie in \[0, 5\)"),
    (lambda p, i, d: (p, np.array([1, 0, 1, 1], np.int32), d), "indices: the graph has a self loop"),
    (lambda p, i, d: (p, i, np.array([0.5, 0.5, 0.7, 2.0])), "dists: expected finite distances"),
    (lambda p, i, d: (p, i, np.array([0.5, 0.5, 0.7, 0.6])), "the graph must be symmetric"),
    (lambda p, i, d: (np.array([0, 1, 3, 3, 4, 4], np.int64), np.array([1, 0, 2, 1], np.int32), d), "symmetric"),
    (lambda p, i, d: (p, i, d.reshape(2, 2)), "dists: expected a 1-D numpy array"),
])
def test_csr_validation(bad, match):
    p, i, d = bad(*_good_csr())
    with pytest.raises((ValueError, TypeError), match=match):
        kernels._mojo_sparse(_prob(), p, i, d, 1.0)


def test_csr_rows_must_ascend():
    p = np.array([0, 2, 3, 4], np.int64)
    i = np.array([2, 1, 0, 0], np.int32)
    with pytest.raises(ValueError, match="strictly ascending"):
        kernels._mojo_sparse(_prob(3), p, i, np.ones(4), 1.0)


def test_mojo_sparse_on_a_given_graph():
    dgms = kernels._mojo_sparse(_prob(), *_good_csr(), 1.0)
    assert sorted(dgms[0][:, 1].tolist()) == [0.5, 0.7, np.inf, np.inf, np.inf]
    assert len(dgms[1]) == 0


def test_unknown_engine():
    with pytest.raises(ValueError, match="engine: one of auto, dense, sparse"):
        kernels._mojo_impl(_prob(), engine="fast")


def test_sparse_memory_budget_error(monkeypatch):
    """The budget holds in sparse mode: MemoryError from inside the engine, then a clean run."""
    monkeypatch.setattr(_arrays, "available_memory", lambda: 8 << 20)  # budget floor: 64 MiB
    X = np.random.default_rng(8).standard_normal((120, 12)).astype(np.float32)
    with pytest.raises(MemoryError, match="memory budget .* building dimension 3 asked for"):
        run(X, "sparse", maxdim=4, threshold=100.0, collapse_edges=False)  # (the collapsed complex fits)
    monkeypatch.undo()
    assert len(run(X[:20], "sparse", maxdim=2, threshold=100.0)[0]) == 20


def test_sparse_cancel_from_another_thread():
    X = np.random.default_rng(5).standard_normal((3000, 3))
    # no collapse: with it (auto at maxdim 3) the call now ends in ~0.25 s, before the cancel;
    # without, the engine runs 3-4 s (the collapse's own cancel: test_persistence_collapse)
    kw = dict(maxdim=3, threshold=0.6, collapse_edges=False)
    with aura_lab.cancellable() as ctl:
        threading.Timer(0.3, ctl.cancel).start()
        t0 = time.perf_counter()
        with pytest.raises(Cancelled):
            run(X, "sparse", **kw)
        assert time.perf_counter() - t0 < 2.0
    small = run(X[:50], "sparse", maxdim=1, threshold=0.6)  # the engine still works after
    for a, b in zip(small, run(X[:50], "dense", maxdim=1, threshold=0.6)):
        assert a.shape == b.shape and bottleneck(a, b) <= 1e-6


# ------------------------------------------------------------------------------ memory estimate

def _clique_counts_bruteforce(A: np.ndarray, maxdim: int) -> list[int]:
    """k-simplices (k + 1 pairwise adjacent vertices) of the clique complex, k = 0..maxdim."""
    n = A.shape[0]
    counts = [n] + [0] * maxdim
    level = [(v,) for v in range(n)]
    for k in range(1, maxdim + 1):
        level = [s + (w,) for s in level for w in range(s[-1] + 1, n) if all(A[u, w] for u in s)]
        counts[k] = len(level)
    return counts


@pytest.mark.parametrize("seed", range(4))
def test_estimate_counts_are_exact_on_small_graphs(seed):
    rng = np.random.default_rng(seed)
    X = rng.random((50, 3))
    D = pairwise_distances(X)
    thr = 0.35 + 0.05 * seed
    Adj = (D <= thr) & ~np.eye(50, dtype=bool)
    want = _clique_counts_bruteforce(Adj, 5)
    indptr, indices, _ = graph._csr_from_dense(D, thr)
    for est in (P.estimate_engine_bytes(50, 5, indptr, indices, 8), P.estimate_engine_bytes(50, 5, D=D, thr=thr)):
        c = est["simplices"]
        assert c["exact"] == [True] * 6
        assert c["estimate"] == want and c["lower"] == want
        assert all(u >= w for u, w in zip(c["upper"], want))
        assert 0 < est["lower_bytes"] <= est["estimate_bytes"]


def test_estimate_bounds_when_sampled(monkeypatch):
    """Sampled vertices and subsampled neighbourhoods: lower <= exact <= upper, estimate within them."""
    monkeypatch.setattr(estimate, "ESTIMATE_MAX_SAMPLE", 40)
    monkeypatch.setattr(estimate, "ESTIMATE_MAX_LOCAL", 12)
    X = np.random.default_rng(7).random((200, 3))
    D = pairwise_distances(X)
    thr = 0.3
    want = _clique_counts_bruteforce((D <= thr) & ~np.eye(200, dtype=bool), 3)
    c = P.estimate_engine_bytes(200, 3, *graph._csr_from_dense(D, thr)[:2], 8)["simplices"]
    assert c["exact"][:2] == [True, True] and c["estimate"][:2] == want[:2]
    for k in range(2, 4):
        assert c["lower"][k] <= want[k] <= c["upper"][k]
        assert c["lower"][k] <= c["estimate"][k] <= c["upper"][k]
        assert abs(c["estimate"][k] - want[k]) <= 0.5 * want[k]


def test_no_clique_is_counted_when_the_upper_bounds_fit_the_budget():
    """With a budget the lower bound cannot reach even at the counts' upper bounds, the
    estimate takes those upper bounds (counted False); with one it could reach, the cliques are
    counted exactly as without a budget."""
    D = pairwise_distances(np.random.default_rng(5).random((50, 3)))
    thr = 0.4
    want = _clique_counts_bruteforce((D <= thr) & ~np.eye(50, dtype=bool), 4)
    full = P.estimate_engine_bytes(50, 4, D=D, thr=thr)
    assert full["counted"] and full["simplices"]["estimate"] == want
    roomy = P.estimate_engine_bytes(50, 4, D=D, thr=thr, budget=1 << 40)
    c = roomy["simplices"]
    assert not roomy["counted"] and c["exact"] == [True, True, False, False, False]
    assert c["estimate"] == c["upper"] == full["simplices"]["upper"] and c["lower"] == want[:2] + [0.0] * 3
    assert all(u >= w for u, w in zip(c["upper"], want))
    assert 0 < full["lower_bytes"] and roomy["lower_bytes"] <= full["lower_bytes"] <= roomy["estimate_bytes"]
    tight = P.estimate_engine_bytes(50, 4, D=D, thr=thr, budget=full["lower_bytes"])
    assert tight["counted"] and tight["simplices"] == full["simplices"]


@pytest.mark.parametrize("engine", ["dense", "sparse"])
def test_memory_refused_before_the_engine(engine, monkeypatch):
    X = np.random.default_rng(3).random((80, 3))

    def no_engine(*a, **k):
        raise AssertionError("the engine ran")

    D = pairwise_distances(X)
    lower = P.estimate_engine_bytes(80, 3, D=D, thr=0.6)["lower_bytes"]
    available = int(lower / P.BUDGET_FRACTION) - 1  # the budget just below the sure lower bound
    assert available > 4 * D.nbytes  # room for the input itself
    monkeypatch.setattr(kernels, "_run_engine", no_engine)
    monkeypatch.setattr(estimate, "ENGINE_MIN_BUDGET", 0)
    monkeypatch.setattr(_arrays, "available_memory", lambda: available)
    with pytest.raises(MemoryError, match=r"needs at least .* \(estimate .*\).*refused before the engine ran; lower maxdim"):
        run(X, engine, maxdim=3, threshold=0.6, collapse_edges=False)  # the estimate of the uncollapsed complex


def test_memory_estimate_recorded_when_it_fits():
    X = np.random.default_rng(4).random((120, 3))
    for engine in ("dense", "sparse"):
        dgms = run(X, engine, maxdim=2, threshold=0.4)
        st = P.last_stats()
        assert st["estimate_bytes"] > 0 and 0 < st["estimate_lower_bytes"] <= st["peak_bytes"]
        assert st["estimate_simplices"][:2] == [120, st["simplices"][0]]
        assert st["estimate_counted"] is False  # a few MB at most: far inside any budget
        assert len(dgms) == 3


# ------------------------------------------------------------ vertices without an edge

def _engine_sizes(monkeypatch) -> list:
    """Spy: the (engine, n) of every engine run."""
    runs, run = [], kernels._run_engine

    def spy(prob, dist, thr, indptr, indices, engine, estimate=None, n=None):
        runs.append((engine[0], prob.n if n is None else n))
        return run(prob, dist, thr, indptr, indices, engine, estimate=estimate, n=n)

    monkeypatch.setattr(kernels, "_run_engine", spy)
    return runs


def test_isolated_vertices_stay_out_of_the_engine(monkeypatch):
    """A cluster of 300 points among 2000 points without a neighbour: the engine runs on the
    cluster's points that have a neighbour (renumbered), the others come back as infinite H0
    bars; diagrams as ripser.py's on the whole cloud."""
    import ripser
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(11)
    X = np.concatenate([rng.standard_normal((300, 3)), np.c_[np.arange(2000) * 10.0 + 100, np.zeros((2000, 2))]])
    X = X[rng.permutation(len(X))].astype(np.float32)  # isolated vertices everywhere in the numbering
    runs = _engine_sizes(monkeypatch)
    got = aura_lab.rips_persistence(X, maxdim=2, threshold=1.0, backend="mojo")
    with_edge = np.unique(cKDTree(X.astype(np.float64)).query_pairs(1.0, output_type="ndarray")).size
    assert 250 < with_edge < 300 and runs == [("sparse", with_edge)]
    ref = ripser.ripser(X, maxdim=2, thresh=1.0)["dgms"]
    assert [len(d) for d in got] == [len(d) for d in ref] and np.sum(np.isinf(got[0][:, 1])) >= 2000
    for g, r in zip(got, ref):
        assert aura_lab.bottleneck_distance(g, r) <= 1e-6


def test_no_edge_at_all_gives_only_infinite_h0_bars(monkeypatch):
    X = np.c_[np.arange(1500) * 2.0, np.zeros(1500)]
    runs = _engine_sizes(monkeypatch)
    got = aura_lab.rips_persistence(X, maxdim=2, threshold=1.0, backend="mojo")
    assert runs == [] and got[0].shape == (1500, 2) and np.all(got[0][:, 0] == 0) and np.all(np.isinf(got[0][:, 1]))
    assert [d.shape for d in got[1:]] == [(0, 2), (0, 2)]


def test_big_a_circle_among_a_million_isolated_points(monkeypatch):
    """gudhi's own test_big (test_sklearn_rips_persistence.py): 10^6 points 100 apart on a
    line, the first 24 replaced by a circle, threshold 10, dimensions up to 24. Simplex
    indices over 10^6 vertices overflow 64 bits (gudhi falls back to its SimplexTree); here
    the engine runs on the 24 vertices with an edge: dense, since they form a complete graph."""
    import ripser
    from gudhi.datasets.generators import points

    n = 1_000_000
    X = np.zeros((n, 2))
    X[:, 0] = np.arange(n) * 100
    circle = points.torus(24, 1, "grid")
    X[:24] = circle
    runs = _engine_sizes(monkeypatch)
    got = aura_lab.rips_persistence(X, maxdim=24, threshold=10, backend="mojo")
    assert runs == [("dense", 24)] and len(got) == 25
    assert got[0].shape == (n, 2) and np.sum(np.isinf(got[0][:, 1])) == n - 23
    alone = aura_lab.rips_persistence(circle, maxdim=24, backend="mojo")  # the circle on its own
    for g, a in zip(got[1:], alone[1:]):
        assert aura_lab.bottleneck_distance(g, a) <= 1e-9
    assert [len(d) for d in got[1:8]] == [1, 7, 1, 0, 1, 0, 0]
    for g, r in zip(got[:6], ripser.ripser(circle, maxdim=5)["dgms"]):  # ripser.py: float32 distances
        assert aura_lab.bottleneck_distance(g[np.isfinite(g[:, 1])], r[np.isfinite(r[:, 1])]) <= 1e-6
