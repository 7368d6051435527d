"""aura_lab.neighbors.radius_graph: the radius graph straight into CSR, against the cKDTree /
brute-force reference (radius_graph_ref) and against the dense mojo distance matrix.

Error bound of the distances (what "same distances" means against the float64 reference), with
u the unit roundoff of the work dtype (2^-24 float32, 2^-53 float64) and D the dimension:

* euclidean: t_k = fl(x_k - y_k) = (x_k - y_k)(1 + d_k), |d_k| <= u; the sum of squares is
  D fused multiply-adds, one rounding each, of nonnegative terms: acc = sum t_k^2 (1 + th),
  |th| <= g_D = D u / (1 - D u); the sqrt rounds once more. So |dhat - d| <= d (u + g_D / 2 + u)
  + O(u^2) <= (D / 2 + 3) u d.
* sqeuclidean: no sqrt, squared error: (D + 3) u d. cityblock: D - 1 additions after the
  differences: (D + 2) u d. chebyshev: one rounding per difference: 2 u d.
* cosine runs in float64 (as distance.py), then rounds to the output: 2^-53 (4 D + 16) absolute
  (1 - x.y / (|x| |y|) loses relative precision near 0) plus u_out c for the final rounding.

The float64 reference's own error is of the same form with 2^-53; it is added. An edge that is in
one graph and not the other must lie within that bound of r (float32 near the threshold); for
float64 input and for the exact tie cases (integer coordinates: every operation exact) the
graphs must be identical. Against the dense mojo matrix (the persistence filtration) the result
must be exact in every case: same pairs (D[i, j] <= r), same values bit for bit.
"""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest

import aura_lab
from aura_lab import _arrays as A
from aura_lab import neighbors as N
from aura_lab.errors import Cancelled

pytestmark = pytest.mark.requires("mojo")

U = {np.dtype(np.float32): 2.0**-24, np.dtype(np.float64): 2.0**-53}


def _bound(metric: str, dim: int, d: np.ndarray, out_dtype) -> np.ndarray:
    """Bound on |ours - exact| + |ref - exact| for distances d (see the module docstring)."""
    out = np.dtype(out_dtype)
    work_u = U[out] if metric != "cosine" else U[np.dtype(np.float64)]
    rel = {"euclidean": dim / 2 + 3, "sqeuclidean": dim + 3, "cityblock": dim + 2, "chebyshev": 2}
    if metric == "cosine":
        return (4 * dim + 16) * 2.0**-53 * 2 + U[out] * np.abs(d)
    return rel[metric] * (work_u + 2.0**-53) * np.abs(d)


def _edges(g):
    indptr, indices, dists = g
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    return rows, indices.astype(np.int64), dists


def _check_csr(g, n, out_dtype):
    indptr, indices, dists = g
    assert indptr.dtype == np.int64 and indices.dtype == np.int32 and dists.dtype == np.dtype(out_dtype)
    assert indptr.shape == (n + 1,) and indptr[0] == 0 and np.all(np.diff(indptr) >= 0)
    assert len(indices) == len(dists) == indptr[-1]
    rows, cols, _ = _edges(g)
    assert np.all(cols != rows)
    for i in range(n):  # ascending, distinct
        seg = indices[indptr[i]:indptr[i + 1]]
        assert np.all(np.diff(seg) > 0)
    # symmetric, with equal values both ways
    key = rows * n + cols
    tkey = cols * n + rows
    o, to = np.argsort(key), np.argsort(tkey)
    np.testing.assert_array_equal(key[o], tkey[to])
    np.testing.assert_array_equal(dists[o], dists[to])


def _compare_ref(g, ref, X, r, metric, exact: bool):
    """Same edges and distances as the reference, up to the bound near r (see the docstring)."""
    n, dim = X.shape
    out = g[2].dtype
    if exact:
        np.testing.assert_array_equal(g[0], ref[0])
        np.testing.assert_array_equal(g[1], ref[1])
    rows, cols, d = _edges(g)
    rrows, rcols, rd = _edges(ref)
    a, b = rows * n + cols, rrows * n + rcols
    common, ia, ib = np.intersect1d(a, b, assume_unique=True, return_indices=True)
    x64 = np.asarray(X, np.float64)
    d_only = N._pair_dist64(x64, np.concatenate([rows[np.setdiff1d(np.arange(len(a)), ia)],
                                                 rrows[np.setdiff1d(np.arange(len(b)), ib)]]),
                            np.concatenate([cols[np.setdiff1d(np.arange(len(a)), ia)],
                                            rcols[np.setdiff1d(np.arange(len(b)), ib)]]), metric)
    assert np.all(np.abs(d_only - r) <= _bound(metric, dim, np.full_like(d_only, r), out)), \
        f"edges differ away from the threshold: {d_only[np.abs(d_only - r) > _bound(metric, dim, np.full_like(d_only, r), out)][:5]}"
    exact_d = N._pair_dist64(x64, rows[ia], cols[ia], metric)
    err = np.abs(d[ia].astype(np.float64) - exact_d)
    assert np.all(err <= _bound(metric, dim, exact_d, out) + U[np.dtype(out)] * np.abs(exact_d)), err.max()


def _compare_dense(g, X, r, metric):
    """Exactly the dense mojo matrix: D[i, j] <= r (r rounded down to its dtype), same values."""
    n = X.shape[0]
    D = np.asarray(aura_lab.pairwise_distances(X, metric=metric, backend="mojo"))
    assert D.dtype == g[2].dtype
    r_out = A.round_down(float(r), D.dtype)
    mask = D <= r_out
    np.fill_diagonal(mask, False)
    rows, cols, d = _edges(g)
    want = np.argwhere(mask)  # row-major: rows ascending, columns ascending
    np.testing.assert_array_equal(rows, want[:, 0])
    np.testing.assert_array_equal(cols, want[:, 1])
    np.testing.assert_array_equal(d.view(np.uint8), D[rows, cols].view(np.uint8))  # bit for bit
    assert len(g[0]) == n + 1


def _methods(metric, dim):
    ms = ["auto", "tiles"]
    if metric in N.GRID_METRICS and 1 <= dim <= N.GRID_MAX_D:
        ms.append("grid")
    return ms


# ------------------------------------------------------------------------------ random clouds

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dim", range(1, 10))
def test_random_clouds_euclidean(dtype, dim):
    rng = np.random.default_rng(100 + dim)
    n = 400
    X = rng.standard_normal((n, dim)).astype(dtype)
    # a radius giving ~5 % of the pairs: the median of a sample of distances, scaled
    sample = np.linalg.norm(X[rng.integers(0, n, 500)].astype(np.float64) - X[rng.integers(0, n, 500)], axis=1)
    r = float(np.quantile(sample, 0.05))
    ref = N.radius_graph_ref(X, r)
    results = {}
    for m in _methods("euclidean", dim):
        g = N.radius_graph(X, r, method=m)
        _check_csr(g, n, dtype)
        _compare_ref(g, ref, X, r, "euclidean", exact=dtype == np.float64)
        _compare_dense(g, X, r, "euclidean")
        results[m] = g
    for m, g in results.items():  # every path gives the same arrays, bit for bit
        for a, b in zip(g, results["tiles"]):
            np.testing.assert_array_equal(a.view(np.uint8), b.view(np.uint8), err_msg=m)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("metric", N.METRICS)
def test_each_metric(dtype, metric):
    rng = np.random.default_rng(7)
    X = rng.standard_normal((300, 4)).astype(dtype)
    D = N._pair_dist64(X.astype(np.float64), *np.triu_indices(300, 1), metric)
    r = float(np.quantile(D, 0.08))
    ref = N.radius_graph_ref(X, r, metric)
    for m in _methods(metric, 4):
        g = N.radius_graph(X, r, metric, method=m)
        _check_csr(g, 300, dtype)
        _compare_ref(g, ref, X, r, metric, exact=False)
        _compare_dense(g, X, r, metric)


# ------------------------------------------------------------------------------ ties, duplicates

def _integer_grid(dim, side):
    return np.array(list(itertools.product(range(side), repeat=dim)), np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dim,side", [(1, 40), (2, 9), (3, 5), (4, 4), (5, 3), (7, 2)])
@pytest.mark.parametrize("metric", ["euclidean", "cityblock", "chebyshev", "sqeuclidean"])
def test_ties_on_integer_grids(dtype, dim, side, metric):
    """Integer coordinates: every distance is computed exactly, so pairs at exactly r are in
    (inclusive), the graphs are identical, including duplicated points (distance 0)."""
    X = _integer_grid(dim, side)
    X = np.concatenate([X, X[::3]])  # duplicates
    X = X[np.random.default_rng(dim).permutation(len(X))].astype(dtype)
    n = len(X)
    radii = {"euclidean": [0.0, 1.0, 2.0], "sqeuclidean": [0.0, 1.0, 2.0, 4.0], "cityblock": [0.0, 1.0, 2.0],
             "chebyshev": [0.0, 1.0]}[metric]
    for r in radii:
        ref = N.radius_graph_ref(X, r, metric)
        for m in _methods(metric, dim):
            g = N.radius_graph(X, r, metric, method=m)
            _check_csr(g, n, dtype)
            _compare_ref(g, ref, X, r, metric, exact=True)
            np.testing.assert_array_equal(g[2], ref[2])  # exact values too
            _compare_dense(g, X, r, metric)
        if r == 0:  # only the duplicates
            rows, cols, d = _edges(ref)
            assert len(rows) > 0
            assert np.all(d == 0) and np.all(np.all(X[rows] == X[cols], axis=1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cosine_ties(dtype):
    """Axis vectors: cosine distances exactly 0, 1 and 2; r = 1 takes the orthogonal pairs."""
    E = np.concatenate([np.eye(5), -np.eye(5), 2 * np.eye(5)]).astype(dtype)
    for r in (0.0, 1.0, 2.0):
        ref = N.radius_graph_ref(E, r, "cosine")
        g = N.radius_graph(E, r, "cosine")
        _compare_ref(g, ref, E, r, "cosine", exact=True)
        _compare_dense(g, E, r, "cosine")
    assert len(N.radius_graph(E, 2.0, "cosine")[1]) == 15 * 14


def test_points_at_exactly_r_are_edges_and_just_below_are_not():
    X = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 5.0], [5.0, 0.0]])
    for m in ("grid", "tiles"):
        indptr, idx, d = N.radius_graph(X, 5.0, method=m)
        assert idx[indptr[0]:indptr[1]].tolist() == [1, 2, 3] and np.all(d[:3] == 5.0)
        indptr, idx, d = N.radius_graph(X, np.nextafter(5.0, 0.0), method=m)
        assert indptr[1] == 0


def test_float32_threshold_rounds_down_like_the_persistence_code():
    """r between two float32 values: an entry equal to the float32 below r is an edge, as
    ``D[i, j] <= threshold`` in the persistence engine (threshold rounded down to float32)."""
    X = np.array([[0.0], [0.1]], np.float32)
    d32 = np.float32(0.1)
    r = float(np.nextafter(d32, np.float32(1))) - 1e-12  # above d32, below the next float32
    for m in ("grid", "tiles"):
        assert len(N.radius_graph(X, r, method=m)[1]) == 2
        assert len(N.radius_graph(X, float(d32) * (1 - 1e-9), method=m)[1]) == 0


def test_float32_with_large_magnitudes_runs_in_float64_like_the_dense_kernel():
    rng = np.random.default_rng(3)
    X = (rng.standard_normal((200, 3)) * 1e19).astype(np.float32)
    r = 5e18
    for m in ("grid", "tiles"):
        g = N.radius_graph(X, r, method=m)
        assert g[2].dtype == np.float32
        _compare_dense(g, X, r, "euclidean")


# ------------------------------------------------------------------------------ edge cases

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_empty_and_single_point(dtype):
    for n in (0, 1):
        for m in ("auto", "grid", "tiles"):
            indptr, idx, d = N.radius_graph(np.zeros((n, 3), dtype), 1.0, method=m)
            assert indptr.tolist() == [0] * (n + 1) and idx.dtype == np.int32 and d.dtype == dtype
            assert len(idx) == len(d) == 0
        ref = N.radius_graph_ref(np.zeros((n, 3), dtype), 1.0)
        assert ref[0].tolist() == [0] * (n + 1)


def test_zero_dimensions_and_r_inf_give_all_pairs():
    n = 37
    indptr, idx, d = N.radius_graph(np.zeros((n, 0)), 0.0)
    assert len(idx) == n * (n - 1) and np.all(d == 0)
    X = np.random.default_rng(0).standard_normal((n, 3))
    for metric in N.METRICS:
        g = N.radius_graph(X, np.inf, metric)
        assert np.all(np.diff(g[0]) == n - 1)
        _compare_dense(g, X, np.inf, metric)
    ref = N.radius_graph_ref(X, np.inf)
    np.testing.assert_array_equal(N.radius_graph(X, np.inf)[1], ref[1])


def test_r_zero_links_duplicates_only():
    X = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0 + 1e-12], [1.0, 2.0]])
    for m in ("grid", "tiles"):
        indptr, idx, d = N.radius_graph(X, 0, method=m)
        assert indptr.tolist() == [0, 2, 4, 4, 6] and idx.tolist() == [1, 3, 0, 3, 0, 1] and np.all(d == 0)


def test_auto_picks_grid_for_low_dimensions_and_tiles_for_high():
    rng = np.random.default_rng(5)
    N.radius_graph(rng.random((20000, 3)), 0.02)
    assert N.last_path() == "grid"
    N.radius_graph(rng.random((2000, 9)), 0.5)
    assert N.last_path() == "tiles"
    N.radius_graph(rng.random((2000, 3)), 0.1, "cityblock")
    assert N.last_path() == "tiles"


def test_threads_do_not_change_the_result():
    X = np.random.default_rng(9).random((5000, 3)).astype(np.float32)
    for m in ("grid", "tiles"):
        a = N.radius_graph(X, 0.05, method=m, threads=1)
        b = N.radius_graph(X, 0.05, method=m, threads=2)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


@pytest.mark.requires("torch")
def test_torch_and_list_inputs():
    import torch

    X = np.random.default_rng(2).random((100, 2))
    want = N.radius_graph(X, 0.2)
    for arg in (torch.from_numpy(X), X.tolist()):
        for a, b in zip(N.radius_graph(arg, 0.2), want):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------ cancel, memory

def test_cancel_stops_a_large_search():
    X = np.random.default_rng(0).random((80_000, 16)).astype(np.float32)  # tiles: ~10 s of counting
    with aura_lab.cancellable() as ctl:
        threading.Timer(0.3, ctl.cancel).start()
        t = time.perf_counter()
        with pytest.raises(Cancelled):
            N.radius_graph(X, 0.05)
        assert time.perf_counter() - t < 3.0
    # the next call works
    g = N.radius_graph(X[:500], 0.5)
    _compare_dense(g, X[:500], 0.5, "euclidean")


def test_cancel_stops_the_grid():
    X = np.random.default_rng(1).random((1_500_000, 2))
    with aura_lab.cancellable() as ctl:
        threading.Timer(1.0, ctl.cancel).start()
        with pytest.raises(Cancelled):
            N.radius_graph(X, 0.05, method="grid")  # ~1e10 pairs: counting alone takes many seconds


def test_memory_error_names_the_estimate(monkeypatch):
    X = np.random.default_rng(0).random((3000, 2))
    from aura_lab import _arrays

    monkeypatch.setattr(_arrays, "available_memory", lambda: 10_000)
    with pytest.raises(MemoryError, match=r"radius_graph: the CSR of \d+ neighbour entries"):
        N.radius_graph(X, 0.5, method="tiles")
    with pytest.raises(MemoryError, match="radius_graph"):
        N.radius_graph(X, 0.5, method="grid")


# ------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("call,exc,match", [
    (lambda: N.radius_graph(np.zeros(5), 1.0), ValueError, "^X: expected a 2-D"),
    (lambda: N.radius_graph(np.zeros((2, 2, 2)), 1.0), ValueError, "^X: expected a 2-D"),
    (lambda: N.radius_graph(np.array([[0.0, np.nan]]), 1.0), ValueError, "^X: .*NaN"),
    (lambda: N.radius_graph(np.array([[0.0, np.inf]]), 1.0), ValueError, "^X: .*infinite"),
    (lambda: N.radius_graph(np.array([["a", "b"]]), 1.0), TypeError, "^X: "),
    (lambda: N.radius_graph(np.zeros((3, 2)), -1.0), ValueError, "^r: must be >= 0"),
    (lambda: N.radius_graph(np.zeros((3, 2)), float("nan")), ValueError, "^r: must be >= 0"),
    (lambda: N.radius_graph(np.zeros((3, 2)), "1"), TypeError, "^r: expected a real number"),
    (lambda: N.radius_graph(np.zeros((3, 2)), None), TypeError, "^r: expected a real number"),
    (lambda: N.radius_graph(np.zeros((3, 2)), True), TypeError, "^r: expected a real number"),
    (lambda: N.radius_graph(np.zeros((3, 2)), 1.0, "minkowski"), ValueError, "^metric: unknown metric"),
    (lambda: N.radius_graph(np.zeros((3, 2)), 1.0, method="kdtree"), ValueError, "^method: expected one of"),
    (lambda: N.radius_graph(np.ones((3, 2)), 1.0, "cosine", method="grid"), ValueError, "^method: the grid path"),
    (lambda: N.radius_graph(np.zeros((3, 7)), 1.0, method="grid"), ValueError, "^method: the grid path takes up to"),
    (lambda: N.radius_graph(np.zeros((3, 2)), 1.0, threads=0), ValueError, "^threads: must be >= 1"),
    (lambda: N.radius_graph(np.zeros((3, 2)), 1.0, threads=1.5), TypeError, "^threads: expected an integer"),
    (lambda: N.radius_graph(np.array([[1.0, 0.0], [0.0, 0.0]]), 1.0, "cosine"), ValueError, "^X: the cosine .* row 1"),
    (lambda: N.radius_graph_ref(np.zeros(5), 1.0), ValueError, "^X: expected a 2-D"),
])
def test_bad_input_raises_named_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
