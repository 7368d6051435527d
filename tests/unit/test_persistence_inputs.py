"""Sparse input (scipy.sparse matrices, edge lists, vertex births) and furthest-point
landmarks (``n_perm``) of ``rips_persistence``, against ripser.py (an independent engine with
the same conventions)."""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aura_lab as al
from aura_lab.persistence import inputs as G

from .conftest import optional_module

ripser = optional_module("ripser")
pytestmark = pytest.mark.requires("ripser")


def _sorted(d):
    d = np.asarray(d, np.float64).reshape(-1, 2)
    return d[np.lexsort((d[:, 1], d[:, 0]))]


def assert_same_diagrams(ours, ref):
    assert len(ours) == len(ref)
    for k, (a, b) in enumerate(zip(ours, ref)):
        a, b = _sorted(a), _sorted(b)
        assert a.shape == b.shape, f"H{k}: {a.shape[0]} bars, ripser.py {b.shape[0]}"
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7, err_msg=f"H{k}")


def random_graph(seed: int, n: int, density: float, ties: bool, births: bool):
    """An upper-triangular COO matrix of a random cloud's distances on a random edge subset
    (rounded to 0.1 for ties, some explicit zeros), optionally with vertex births."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, 3))
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1)).astype(np.float32)
    if ties:
        D = np.round(D, 1)
    r, c = np.nonzero(np.triu(rng.random((n, n)) < density, 1))
    data = D[r, c]
    if births:
        b = (rng.random(n) * 0.3).astype(np.float32)
        r, c, data = np.r_[r, np.arange(n)], np.r_[c, np.arange(n)], np.r_[data, b]
    return sp.coo_matrix((data, (r, c)), shape=(n, n))


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), n=st.integers(2, 30), density=st.floats(0.1, 1.0), ties=st.booleans(),
       births=st.booleans(), maxdim=st.integers(0, 2), fmt=st.sampled_from(["coo", "csr", "csc", "lil"]))
def test_sparse_matrices_match_ripser(seed, n, density, ties, births, maxdim, fmt):
    M = random_graph(seed, n, density, ties, births)
    ours = al.rips_persistence(M.asformat(fmt), maxdim=maxdim, distance_matrix=True, backend="mojo")
    assert_same_diagrams(ours, ripser.ripser(M, maxdim=maxdim, distance_matrix=True)["dgms"])


@pytest.mark.parametrize("triangle", ["upper", "lower", "both"])
def test_either_triangle_or_both(triangle):
    M = random_graph(3, 25, 0.5, True, False).tocsr()
    ref = ripser.ripser(M, maxdim=2, distance_matrix=True)["dgms"]
    given_ = {"upper": M, "lower": M.T, "both": M + M.T}[triangle]
    assert_same_diagrams(al.rips_persistence(given_, maxdim=2, distance_matrix=True), ref)


def dense_of(M):
    """The full matrix of an upper-triangular COO graph, inf off its edges."""
    D = np.full(M.shape, np.inf, np.float32)
    D[M.row, M.col] = D[M.col, M.row] = M.data
    np.fill_diagonal(D, 0)
    return D


def test_sparse_equals_dense_with_infinite_gaps_and_gudhi():
    M = random_graph(5, 30, 0.4, False, False)
    D = dense_of(M)
    dense = al.rips_persistence(D, maxdim=2, distance_matrix=True, backend="mojo")
    assert_same_diagrams(al.rips_persistence(M, maxdim=2, distance_matrix=True, backend="mojo"), dense)
    assert_same_diagrams(al.rips_persistence(M, maxdim=2, distance_matrix=True, backend="gudhi"), dense)


def test_explicit_zeros_are_edges_and_missing_entries_are_not():
    # the 4-cycle 0-1-2-3-0 without diagonals, its edge 0-1 an explicitly stored zero: a loop
    M = sp.coo_matrix((np.array([0.0, 1.0, 1.0, 1.0]), ([0, 1, 2, 0], [1, 2, 3, 3])), shape=(4, 4))
    h0, h1 = al.rips_persistence(M, maxdim=1, distance_matrix=True)
    np.testing.assert_array_equal(h0, [[0, 1], [0, 1], [0, np.inf]])
    np.testing.assert_array_equal(h1, [[1, np.inf]])
    assert_same_diagrams([h0, h1], ripser.ripser(M, maxdim=1, distance_matrix=True)["dgms"])
    # the zero dropped (scipy's eliminate_zeros): the path 1-2-3-0, no loop
    P = M.tocsr()
    P.eliminate_zeros()
    h0, h1 = al.rips_persistence(P, maxdim=1, distance_matrix=True)
    np.testing.assert_array_equal(h0, [[0, 1], [0, 1], [0, 1], [0, np.inf]])
    assert h1.shape == (0, 2)


def test_isolated_vertices_of_the_shape_count():
    M = sp.coo_matrix((np.array([0.5]), ([0], [1])), shape=(4, 4))
    assert al.rips_persistence(M, maxdim=0, distance_matrix=True)[0].tolist() == [[0, 0.5], [0, np.inf], [0, np.inf], [0, np.inf]]


def test_edge_list_equals_its_matrix():
    M = random_graph(11, 20, 0.6, True, True)
    edges = (M.row, M.col, M.data)
    assert_same_diagrams(al.rips_persistence(edges, maxdim=2, distance_matrix=True),
                         al.rips_persistence(M, maxdim=2, distance_matrix=True))


def test_vertex_births_change_h0_only():
    M = random_graph(2, 20, 0.7, False, True)
    no_births = M.tocsr()
    no_births.setdiag(0)
    no_births.eliminate_zeros()
    with_b = al.rips_persistence(M, maxdim=2, distance_matrix=True)
    without = al.rips_persistence(no_births, maxdim=2, distance_matrix=True)
    assert not np.array_equal(_sorted(with_b[0]), _sorted(without[0]))
    assert_same_diagrams(with_b[1:], without[1:])


def test_threshold_applies_to_sparse_edges():
    M = random_graph(4, 25, 0.8, False, False)
    ref = ripser.ripser(M, maxdim=1, distance_matrix=True, thresh=0.4)["dgms"]
    assert_same_diagrams(al.rips_persistence(M, maxdim=1, distance_matrix=True, threshold=0.4), ref)


def test_representatives_on_sparse_input():
    M = random_graph(8, 25, 0.6, False, False)
    res = al.rips_persistence(M, maxdim=1, distance_matrix=True, return_cocycles=True, return_cycles=True)
    dense = al.rips_persistence(dense_of(M), maxdim=1, distance_matrix=True, return_cycles=True, return_cocycles=True)
    assert_same_diagrams(res.dgms, dense.dgms)
    assert len(res.cycles[1]) == len(res.dgms[1]) > 0
    for (a, ca), (b, cb) in zip(res.cycles[1] + res.cocycles[1], dense.cycles[1] + dense.cocycles[1]):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ca, cb)
    edges = {(int(j), int(i)) for i, j in zip(M.row, M.col)} | {(int(i), int(j)) for i, j in zip(M.row, M.col)}
    for s, _ in res.cycles[1]:  # every cycle edge is an edge of the sparse input
        assert all((int(u), int(v)) in edges for u, v in s)


@pytest.mark.parametrize("seed", range(4))
def test_dense_matrix_with_a_diagonal_gives_vertex_births_as_ripser(seed):
    """A dense matrix with a nonzero diagonal: vertex births, as ripser.py reads it (it turns
    such a matrix into a sparse one; no off-diagonal zeros here, which ripser.py would drop)."""
    rng = np.random.default_rng(seed)
    X = rng.random((30, 2))
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    D[np.diag_indices(30)] = rng.uniform(0, 0.3, 30) * (rng.random(30) < 0.5)
    for thresh in (np.inf, 0.5):
        ref = ripser.ripser(D, maxdim=2, distance_matrix=True, thresh=thresh)["dgms"]
        assert_same_diagrams(al.rips_persistence(D, maxdim=2, distance_matrix=True, threshold=thresh), ref)
    assert_same_diagrams(al.rips_persistence(D, maxdim=2, distance_matrix=True),
                         al.rips_persistence(sp.coo_matrix(D), maxdim=2, distance_matrix=True))


# ------------------------------------------------------------------------------ landmarks


def test_n_perm_representatives_index_the_rows_of_x_as_ripser():
    X = np.random.default_rng(3).random((120, 2))
    res = al.rips_persistence(X, maxdim=1, n_perm=30, return_cocycles=True, return_cycles=True)
    ref = ripser.ripser(X, maxdim=1, n_perm=30, do_cocycles=True)
    landmarks = set(res.idx_perm.tolist())
    assert_same_diagrams(res.dgms, ref["dgms"])
    for dim in res.cycles + res.cocycles:
        for s, _ in dim:
            assert set(s.ravel().tolist()) <= landmarks  # rows of X, all of them landmarks
    on_landmarks = al.rips_persistence(X[res.idx_perm], maxdim=1, return_cocycles=True)
    for (s, c), (t, e) in zip(res.cocycles[1], on_landmarks.cocycles[1]):
        np.testing.assert_array_equal(s, res.idx_perm[t])
        np.testing.assert_array_equal(c, e)
    ours = res.ripser_cocycles()[1]  # ripser.py's layout: (m, k + 2), vertices as rows of X
    assert len(ours) == len(ref["cocycles"][1])
    for a in ours:
        assert a.shape[1] == 3 and set(a[:, :2].ravel().tolist()) <= landmarks

@pytest.mark.parametrize("as_matrix", [False, True])
def test_n_perm_matches_ripser(as_matrix):
    X = np.random.default_rng(1).random((200, 2))
    arg = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1)) if as_matrix else X
    res = al.rips_persistence(arg, maxdim=1, n_perm=40, distance_matrix=as_matrix)
    ref = ripser.ripser(arg, maxdim=1, n_perm=40, distance_matrix=as_matrix)
    np.testing.assert_array_equal(res.idx_perm, ref["idx_perm"])
    assert res.r_cover == pytest.approx(ref["r_cover"], rel=1e-6)
    assert_same_diagrams(res.dgms, ref["dgms"])


def test_n_perm_covering_radius_is_the_largest_distance_to_a_landmark():
    X = np.random.default_rng(2).random((150, 3))
    res = al.rips_persistence(X, maxdim=0, n_perm=10)
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    assert res.idx_perm[0] == 0 and len(set(res.idx_perm.tolist())) == 10
    assert res.r_cover == pytest.approx(D[:, res.idx_perm].min(axis=1).max())
    full = al.rips_persistence(X, n_perm=150, maxdim=0)
    assert full.r_cover == 0.0


# ------------------------------------------------------------------------------ bad input

def _bad(M, *, err=ValueError, match, **kw):
    with pytest.raises(err, match=match):
        al.rips_persistence(M, distance_matrix=kw.pop("distance_matrix", True), **kw)


def test_bad_sparse_input():
    rc = ([0, 1], [1, 2])
    _bad(sp.coo_matrix((np.array([-1.0, 1.0]), rc), shape=(3, 3)), match="X: the sparse distance matrix has negative")
    _bad(sp.coo_matrix((np.array([np.nan, 1.0]), rc), shape=(3, 3)), match="X: the sparse distance matrix contains NaN")
    _bad(sp.coo_matrix((np.array([1.0, 2.0]), ([0, 1], [1, 0])), shape=(3, 3)), match=r"not symmetric: the edge \(1, 0\)")
    _bad(sp.coo_matrix((np.array([1.0]), ([0], [1])), shape=(3, 4)), match=r"must be square \(n, n\), got shape \(3, 4\)")
    _bad(sp.coo_matrix((np.array([1.0]), ([0], [1])), shape=(3, 3)), distance_matrix=False,
         match="read as a distance matrix: pass distance_matrix=True")
    _bad((np.array([0, 5]), np.array([1, -1]), np.array([1.0, 1.0])), match=r"X\[1\]: vertex indices must be >= 0")
    _bad((np.array([0.5]), np.array([1]), np.array([1.0])), err=TypeError, match=r"X\[0\]: vertex indices must be integers")
    _bad((np.array([0, 1]), np.array([1]), np.array([1.0])), match="differ in length")
    births = sp.coo_matrix((np.array([0.2, 1.0]), ([0, 0], [0, 1])), shape=(2, 2))
    _bad(births, match="vertex birth times", return_cycles=True)


def test_sparse_input_too_large_for_the_dense_engine_raises_memory_error_up_front(monkeypatch):
    from aura_lab.persistence import kernels

    M = sp.coo_matrix((np.array([1.0]), ([0], [1])), shape=(10**7, 10**7))
    monkeypatch.setattr(kernels, "_ENGINE", "dense")
    _bad(M, maxdim=0, err=MemoryError, match=r"\(10000000, 10000000\) float64 distance matrix built from the 1 edges")


def test_huge_sparse_input_runs_on_the_sparse_engine():
    """The sparse engine never builds the (n, n) matrix: 10^6 vertices, 2 edges."""
    from aura_lab import persistence as P

    n = 10**6
    M = sp.coo_matrix((np.array([1.0, 2.0]), ([0, 5], [1, 7])), shape=(n, n))
    dgms = al.rips_persistence(M, maxdim=1, distance_matrix=True)
    assert P.last_stats()["engine"] == "sparse"
    assert len(dgms[0]) == n and sorted(dgms[0][np.isfinite(dgms[0][:, 1]), 1].tolist()) == [1.0, 2.0]
    assert len(dgms[1]) == 0


def test_bad_n_perm():
    X = np.random.default_rng(0).random((10, 2))
    _bad(X, distance_matrix=False, n_perm=0, match="n_perm: must be >= 1, got 0")
    _bad(X, distance_matrix=False, n_perm=-3, match="n_perm: must be >= 1")
    _bad(X, distance_matrix=False, n_perm=11, match="n_perm: at most the number of points, 10, got 11")
    _bad(X, distance_matrix=False, n_perm=2.5, err=TypeError, match="n_perm: expected an integer")
    _bad(sp.coo_matrix(np.ones((3, 3))), n_perm=2, match="n_perm: landmarks are not chosen on sparse input")


def test_h0_with_births_reference_matches_ripser_on_a_path():
    # births 0.5, 0, 0.2 on the path 0 - 1 - 2 with edges 0.6, 0.1: the vertex born at 0.2
    # dies at 0.1? no: its edge enters at 0.1 < 0.2, so it merges with zero persistence
    e = G.SparseEdges(3, np.array([1, 2]), np.array([0, 1]), np.array([0.6, 0.1]), np.array([0.5, 0.0, 0.2]))
    np.testing.assert_array_equal(G.h0_with_births(e, np.inf), [[0.5, 0.6], [0.0, np.inf]])
    M = sp.coo_matrix((np.array([0.5, 0.0, 0.2, 0.6, 0.1]), ([0, 1, 2, 0, 1], [0, 1, 2, 1, 2])), shape=(3, 3))
    assert_same_diagrams([G.h0_with_births(e, np.inf)], ripser.ripser(M, maxdim=0, distance_matrix=True)["dgms"])
