"""Vertex birth times in the mojo engine's own H0 (``h0.mojo``: ripser.py's elder rule by
birth), on both engines and both H0 paths (``dim0``; the sparse maxdim-1 path), against the
readable reference ``inputs.h0_with_births`` and ripser.py, with ties, duplicate points,
isolated vertices, thresholds and edge collapse."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aura_lab import persistence as P
from aura_lab.persistence import inputs as G
from aura_lab.persistence import kernels, problem

from .conftest import optional_module
from .test_persistence_inputs import assert_same_diagrams

ripser = optional_module("ripser")
pytestmark = pytest.mark.requires("mojo", "ripser")


def cloud_with_births(seed: int, n: int, ties: bool, dups: int, dtype=np.float64) -> np.ndarray:
    """The dense distance matrix of a random cloud in the plane (rounded to 0.1 for ties, with
    ``dups`` duplicated points: edges of length 0) whose diagonal holds vertex births, about
    half of them 0, some larger than the vertex's shortest edge (no bar then)."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, 2))
    X[rng.integers(0, n, dups)] = X[rng.integers(0, n, dups)]
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    b = rng.uniform(0, 0.4, n) * (rng.random(n) < 0.5)
    if ties:
        D, b = np.round(D, 1), np.round(b, 1)
    D[np.diag_indices(n)] = b
    return D.astype(dtype)


def run(X, engine: str, **kw):
    """The mojo backend with the engine forced (``kernels._ENGINE``); checks that it ran."""
    old, kernels._ENGINE, kernels._last_stats = kernels._ENGINE, engine, None
    try:
        out = P.rips_persistence(X, backend="mojo", distance_matrix=True, progress=False, **kw)
    finally:
        kernels._ENGINE = old
    assert P.last_stats() is None or P.last_stats()["engine"] == engine  # (None: no edge, no engine run)
    return out


def reference_h0(X, threshold: float = np.inf) -> np.ndarray:
    """``inputs.h0_with_births`` on the validated input (births 0 where the diagonal is)."""
    E = problem._validate(X, 0, threshold, "euclidean", True, 2).X
    E = E if isinstance(E, G.SparseEdges) else G.from_dense(E)
    E = E if E.births is not None else dataclasses.replace(E, births=np.zeros(E.n))
    return P.result._finish([G.h0_with_births(E, problem._edges_threshold(E, threshold))], 0)[0]


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), n=st.integers(2, 24), ties=st.booleans(), dups=st.integers(0, 3),
       maxdim=st.integers(0, 2), thr=st.sampled_from([np.inf, 0.35, 0.65]), engine=st.sampled_from(["dense", "sparse"]),
       as_sparse=st.booleans(), f32=st.booleans())
def test_engine_h0_with_births_equals_the_reference_and_ripser(seed, n, ties, dups, maxdim, thr, engine, as_sparse, f32):
    D = cloud_with_births(seed, n, ties, dups, np.float32 if f32 else np.float64)
    X = sp.coo_matrix(D) if as_sparse else D  # (coo_matrix drops the zeros: duplicates are no edges there)
    ours = run(X, engine, maxdim=maxdim, threshold=thr)
    np.testing.assert_array_equal(ours[0], reference_h0(X, thr))
    if as_sparse or not (D[~np.eye(n, dtype=bool)] == 0).any():  # ripser.py drops a dense matrix's zeros
        assert_same_diagrams(ours, ripser.ripser(X, maxdim=maxdim, distance_matrix=True, thresh=thr)["dgms"])


@pytest.mark.parametrize("engine", ["dense", "sparse"])
@pytest.mark.parametrize("maxdim", [0, 1, 2])
def test_births_decide_which_component_dies(engine, maxdim):
    """Path 0 - 1 - 2 - 3 (edges 0.5, 0.1, 0.3), births 0.4, 0, 0.2, 0.35: at 0.1 vertex 2
    (born 0.2, after its edge) dies into 1 without a bar; at 0.3 vertex 3 (born 0.35) dies
    without a bar; at 0.5 vertex 0 (born 0.4) dies: [0.4, 0.5); vertex 1 lives."""
    D = np.full((4, 4), np.inf)
    for (i, j), d in {(0, 1): 0.5, (1, 2): 0.1, (2, 3): 0.3}.items():
        D[i, j] = D[j, i] = d
    D[np.diag_indices(4)] = [0.4, 0.0, 0.2, 0.35]
    ours = run(D, engine, maxdim=maxdim)
    np.testing.assert_array_equal(ours[0], [[0.0, np.inf], [0.4, 0.5]])
    assert_same_diagrams(ours[:1], ripser.ripser(sp.coo_matrix(np.where(np.isfinite(D), D, 0)), maxdim=0, distance_matrix=True)["dgms"])


def test_equal_births_the_smaller_root_is_elder():
    """Births tie (both 0.2): the larger vertex dies, its bar starts at the shared birth."""
    M = sp.coo_matrix((np.array([0.2, 0.2, 0.7]), ([0, 1, 1], [0, 1, 0])), shape=(2, 2))
    for engine in ("dense", "sparse"):
        np.testing.assert_array_equal(run(M, engine, maxdim=1)[0], [[0.2, 0.7], [0.2, np.inf]])


@pytest.mark.parametrize("maxdim", [0, 1, 2])
def test_isolated_vertices_keep_their_births(maxdim):
    """Vertices without an edge stay out of the sparse engine: their bars [birth, inf) come from
    Python, the others' from the engine over the renumbered vertices."""
    rng = np.random.default_rng(5)
    n = 40
    D = cloud_with_births(7, n, False, 0)
    lonely = np.array([3, 17, 30])
    D[lonely, lonely] = [0.25, 0.0, 0.1]
    keep = rng.random((n, n)) < 0.2
    keep[lonely], keep[:, lonely] = False, False
    M = sp.coo_matrix(np.where(keep, np.triu(D, 1), 0))
    M = sp.coo_matrix((np.r_[M.data, np.diag(D)], (np.r_[M.row, np.arange(n)], np.r_[M.col, np.arange(n)])), shape=(n, n))
    ours = run(M, "sparse", maxdim=maxdim)
    np.testing.assert_array_equal(ours[0], reference_h0(M))
    for v in lonely:
        assert ((ours[0][:, 0] == D[v, v]) & np.isinf(ours[0][:, 1])).any()
    assert_same_diagrams(ours, ripser.ripser(M, maxdim=maxdim, distance_matrix=True)["dgms"])


def test_collapsed_graph_keeps_the_births():
    D = cloud_with_births(11, 60, False, 0)
    ours = P.rips_persistence(D, maxdim=2, distance_matrix=True, threshold=0.5, collapse_edges=True, backend="mojo")
    np.testing.assert_array_equal(ours[0], reference_h0(D, 0.5))
    assert_same_diagrams(ours, ripser.ripser(D, maxdim=2, distance_matrix=True, thresh=0.5)["dgms"])


def test_gudhi_backend_applies_the_reference_births():
    D = cloud_with_births(3, 20, False, 0)
    assert_same_diagrams(P.rips_persistence(D, maxdim=1, distance_matrix=True, backend="gudhi"),
                         ripser.ripser(D, maxdim=1, distance_matrix=True)["dgms"])


def test_the_mojo_backend_does_not_call_the_python_reference(monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("h0_with_births called on the mojo path")

    monkeypatch.setattr(G, "h0_with_births", forbidden)
    D = cloud_with_births(1, 30, False, 0)
    for engine in ("dense", "sparse"):
        assert_same_diagrams(run(D, engine, maxdim=1), ripser.ripser(D, maxdim=1, distance_matrix=True)["dgms"])
