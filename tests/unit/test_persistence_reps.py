"""rips_persistence representatives (return_cycles / return_cocycles), checked against an
independent Z/p linear-algebra oracle built from the definitions in the docstring:

* the cycle of an H_k bar [b, d): boundary 0 over Z/p, simplices of diameter <= b, and at
  every t the cycles of the bars alive at t are independent modulo the boundaries of K_t
  (with as many of them as dim H_k(K_t): they are a basis);
* the cocycle of [b, d): zero coboundary on every (k+1)-simplex of diameter < d, and at every
  t the alive cocycles restricted to K_t pair with the alive cycles nonsingularly.

The oracle builds the full Rips complex (up to dimension maxdim + 1) of small clouds in Python
and takes ranks of boundary matrices mod p by Gaussian elimination.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aura_lab
from aura_lab import _arrays
from aura_lab import persistence as P
from aura_lab.distance import pairwise_distances
from aura_lab.errors import BackendUnavailable, Cancelled

needs_mojo = pytest.mark.requires("mojo")


# ------------------------------------------------------------------------------ the oracle

def rank_mod_p(M: np.ndarray, p: int) -> int:
    """Rank of an integer matrix over Z/p (Gaussian elimination)."""
    A = np.array(M, np.int64) % p
    rank = 0
    rows, cols = A.shape
    for c in range(cols):
        if rank == rows:
            break
        nz = np.flatnonzero(A[rank:, c])
        if nz.size == 0:
            continue
        r = rank + nz[0]
        A[[rank, r]] = A[[r, rank]]
        A[rank] = A[rank] * pow(int(A[rank, c]), p - 2, p) % p
        below = np.flatnonzero(A[:, c])
        below = below[below != rank]
        A[below] = (A[below] - np.outer(A[below, c], A[rank])) % p
        rank += 1
    return rank


class RipsOracle:
    """The Rips complex of the full matrix D up to dimension top, capped at thr."""

    def __init__(self, D: np.ndarray, thr: float, top: int):
        self.D, self.thr = D, thr
        n = D.shape[0]
        self.simplices = {}  # dim -> list of ascending vertex tuples
        self.diam = {}
        for k in range(top + 1):
            keep = []
            for s in itertools.combinations(range(n), k + 1):
                d = max((D[a, b] for a, b in itertools.combinations(s, 2)), default=0.0)
                if d <= thr:
                    keep.append(s)
                    self.diam[s] = d
            self.simplices[k] = keep
        self.index = {k: {s: i for i, s in enumerate(v)} for k, v in self.simplices.items()}

    def chain(self, k: int, rep, p: int) -> np.ndarray:
        """A (simplices, coeffs) pair as a vector over the k-simplices (checks its shape)."""
        simplices, coeffs = rep
        assert simplices.dtype == np.int64 and coeffs.dtype == np.int64
        assert simplices.shape == (len(coeffs), k + 1)
        assert np.all((coeffs >= 1) & (coeffs <= p - 1))
        v = np.zeros(len(self.simplices[k]), np.int64)
        rows = [tuple(int(x) for x in s) for s in simplices]
        assert len(set(rows)) == len(rows), "a simplex appears twice"
        for s, c in zip(rows, coeffs):
            assert list(s) == sorted(s) and len(set(s)) == k + 1, f"{s}: vertices not strictly ascending"
            assert s in self.index[k], f"{s}: not a simplex of the complex"
            v[self.index[k][s]] = c
        return v

    def boundary(self, k: int, t: float) -> np.ndarray:
        """The boundary matrix from the k-simplices of K_t to the (k-1)-simplices (all of
        them); rows of the k-simplices' vertices (k = 0: no rows)."""
        rows = len(self.simplices.get(k - 1, [])) if k >= 1 else 0
        cols = [s for s in self.simplices.get(k, []) if self.diam[s] <= t]
        M = np.zeros((rows, len(cols)), np.int64)
        if k >= 1:
            for j, s in enumerate(cols):
                for i in range(len(s)):
                    M[self.index[k - 1][s[:i] + s[i + 1:]], j] = (-1) ** i
        return M

    def diams(self, k: int) -> np.ndarray:
        return np.array([self.diam[s] for s in self.simplices[k]])


def check_cycles(orc: RipsOracle, k: int, dgm: np.ndarray, cycles, p: int, ts) -> np.ndarray:
    """Every cycle of H_k against the definition; returns them as columns."""
    assert len(cycles) == len(dgm)
    Z = np.stack([orc.chain(k, c, p) for c in cycles], axis=1) if len(cycles) else np.zeros((len(orc.simplices[k]), 0), np.int64)
    if k >= 1:
        assert not np.any(orc.boundary(k, np.inf) @ Z % p), f"H{k}: a cycle has a nonzero boundary"
    dk = orc.diams(k)
    for i, (b, d) in enumerate(dgm):
        assert np.all(dk[Z[:, i] != 0] <= b), f"H{k} bar {i} [{b}, {d}): its cycle uses a simplex born after b"
    for t in ts:
        alive = (dgm[:, 0] <= t) & (t < dgm[:, 1])
        B = orc.boundary(k + 1, t)
        Zk = orc.boundary(k, t)  # rank of the k-cycles of K_t: (k-simplices of K_t) - rank Zk
        betti = int(np.sum(dk <= t)) - (rank_mod_p(Zk, p) if Zk.size else 0) - (rank_mod_p(B, p) if B.size else 0)
        assert int(alive.sum()) == betti, f"H{k} at t={t}: {alive.sum()} bars alive, dim H_k(K_t) = {betti}"
        if alive.any():
            rb = rank_mod_p(B, p) if B.size else 0
            both = np.concatenate([B, Z[:, alive]], axis=1)
            assert rank_mod_p(both, p) == rb + alive.sum(), f"H{k} at t={t}: alive cycles dependent modulo boundaries"
    return Z


def check_cocycles(orc: RipsOracle, k: int, dgm: np.ndarray, cocycles, Z: np.ndarray, p: int, ts) -> None:
    """Every cocycle of H_k against the definition (Z: the checked cycles, as columns)."""
    assert len(cocycles) == len(dgm)
    dk = orc.diams(k)
    delta = orc.boundary(k + 1, np.inf).T  # coboundary: (k+1)-simplices x k-simplices
    dk1 = orc.diams(k + 1) if orc.simplices.get(k + 1) else np.zeros(0)
    for i, (b, d) in enumerate(dgm):
        phi = orc.chain(k, cocycles[i], p)
        if delta.size:
            cob = delta @ phi % p
            assert not np.any(cob[dk1 < d]), f"H{k} bar {i} [{b}, {d}): coboundary nonzero below d"
    Phi = np.stack([orc.chain(k, c, p) for c in cocycles], axis=0) if len(cocycles) else np.zeros((0, len(dk)), np.int64)
    for t in ts:
        alive = (dgm[:, 0] <= t) & (t < dgm[:, 1])
        if alive.any():
            pairing = (Phi[alive] * (dk <= t)) @ Z[:, alive] % p
            assert rank_mod_p(pairing, p) == alive.sum(), f"H{k} at t={t}: cocycles pair singularly with the cycles"


def critical_values(orc: RipsOracle) -> np.ndarray:
    """Every scale at which the complex changes (between two of them it is constant)."""
    return np.unique(orc.diams(1)) if orc.simplices.get(1) else np.zeros(1)


def check_all(D: np.ndarray, res, maxdim: int, thr: float, p: int, ts=None) -> None:
    orc = RipsOracle(D, thr, maxdim + 1)
    ts = critical_values(orc) if ts is None else ts
    for k in range(maxdim + 1):
        Z = check_cycles(orc, k, res.dgms[k], res.cycles[k], p, ts)
        check_cocycles(orc, k, res.dgms[k], res.cocycles[k], Z, p, ts)


def threshold_of(D: np.ndarray, threshold: float) -> float:
    """The documented threshold: min(threshold, enclosing radius min_i max_j D[i, j])."""
    return min(threshold, float(np.min(np.max(D, axis=1)))) if len(D) > 1 else 0.0


def run_and_check(X, *, maxdim, coeff, threshold=np.inf, distance_matrix=False, ts=None):
    res = P.rips_persistence(X, maxdim=maxdim, coeff=coeff, threshold=threshold, distance_matrix=distance_matrix,
                             backend="mojo", return_cycles=True, return_cocycles=True)
    plain = P.rips_persistence(X, maxdim=maxdim, coeff=coeff, threshold=threshold, distance_matrix=distance_matrix,
                               backend="mojo")
    assert len(res.dgms) == len(plain) and all(np.array_equal(a, b) for a, b in zip(res.dgms, plain))
    D = np.asarray(X, np.float64) if distance_matrix else pairwise_distances(X).astype(np.float64)
    check_all(D, res, maxdim, threshold_of(D, threshold), coeff, ts)
    return res


# ------------------------------------------------------------------------------ the oracle itself

def test_oracle_rejects_wrong_representatives():
    """The oracle can fail. The 8-cycle graph metric: H1 is [1, 3); its 8 edges are a cycle,
    7 of them are not, a triangle's boundary is not independent of the boundaries, and a
    cochain on one edge is not a cocycle below 3."""
    i = np.arange(8)
    D = np.minimum(np.abs(i[:, None] - i[None]), 8 - np.abs(i[:, None] - i[None])).astype(np.float64)
    orc = RipsOracle(D, threshold_of(D, np.inf), 2)
    ts = critical_values(orc)
    dgm = np.array([[1.0, 3.0]])
    s = np.sort(np.array([[a, (a + 1) % 8] for a in range(8)], np.int64), axis=1)
    Z = check_cycles(orc, 1, dgm, [(s, np.ones(8, np.int64))], 2, ts)
    with pytest.raises(AssertionError, match="nonzero boundary"):
        check_cycles(orc, 1, dgm, [(s[:-1], np.ones(7, np.int64))], 2, ts)
    tri = np.array([[0, 1], [1, 2], [0, 2]], np.int64)
    with pytest.raises(AssertionError, match="dependent"):
        check_cycles(orc, 1, np.array([[2.0, 3.0]]), [(tri, np.ones(3, np.int64))], 2, [2.0])
    with pytest.raises(AssertionError, match="coboundary nonzero"):
        check_cocycles(orc, 1, dgm, [(s[:1], np.ones(1, np.int64))], Z, 2, ts)


# ------------------------------------------------------------------------------ known spaces

def noisy_circle(n=12, seed=0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 2 * np.pi, n))
    return np.c_[np.cos(t), np.sin(t)] + 0.05 * rng.standard_normal((n, 2))


@needs_mojo
@pytest.mark.parametrize("coeff", [2, 3])
def test_circle(coeff):
    res = run_and_check(noisy_circle(), maxdim=1, coeff=coeff)
    assert len(res.dgms[1]) >= 1 and len(res.dgms[0]) == 12


@needs_mojo
@pytest.mark.parametrize("coeff", [2, 3])
def test_cross_polytopes(coeff):
    """The octahedron (H2) and the 16-cell (H3, maxdim 3) with slightly jittered vertices;
    thresholded below their deaths, so their top class is an infinite bar."""
    for d in (3, 4):
        X = np.concatenate([np.eye(d), -np.eye(d)]) + 0.01 * np.random.default_rng(d).standard_normal((2 * d, d))
        res = run_and_check(X, maxdim=d - 1, coeff=coeff)
        assert len(res.dgms[d - 1]) == 1
        capped = run_and_check(X, maxdim=d - 1, coeff=coeff, threshold=1.6)
        assert np.isinf(capped.dgms[d - 1][:, 1]).sum() == 1


@needs_mojo
@pytest.mark.parametrize("seed, coeff, thr", [(0, 2, np.inf), (1, 3, 1.2), (4, 3, np.inf), (7, 3, 2.0)])
def test_two_linked_circles(seed, coeff, thr):
    """18 points on two noisy circles side by side: several H1 bars alive together (and an
    infinite one when capped at 1.2), an H2 bar at seed 4; float32 at odd seeds."""
    rng = np.random.default_rng(200 + seed)
    t = rng.uniform(0, 2 * np.pi, 18)
    X = np.c_[np.cos(t) + 2.2 * (np.arange(18) % 2), np.sin(t), 0.3 * rng.standard_normal(18)]
    res = run_and_check(X.astype(np.float32) if seed % 2 else X, maxdim=2, coeff=coeff, threshold=thr)
    assert len(res.dgms[1]) >= 1


def rp2_matrix(n=24, seed=3):
    """Points of the projective plane (a hemisphere's points, antipodes identified), the
    metric arccos |x . y|."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((200, 3))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    pick = [0]  # farthest-point sample in the projective metric, for an even cover
    G = np.arccos(np.clip(np.abs(x @ x.T), 0, 1))
    for _ in range(n - 1):
        pick.append(int(np.argmax(G[pick].min(axis=0))))
    D = G[np.ix_(pick, pick)]
    np.fill_diagonal(D, 0)
    return D


@needs_mojo
def test_projective_plane_h1_depends_on_the_field():
    """A sample of RP2: at t = 1 a class of H1 is alive over Z/2 (the projective line, of
    order 2 in integral homology) and none over Z/3; every representative checked at a
    dozen bar births."""
    D = rp2_matrix()
    long = {}
    for coeff in (2, 3):
        res = P.rips_persistence(D, maxdim=2, coeff=coeff, distance_matrix=True, backend="mojo",
                                 return_cycles=True, return_cocycles=True)
        bars = res.dgms[1]
        long[coeff] = int(np.sum((bars[:, 0] <= 1.0) & (bars[:, 1] > 1.0)))  # H1 alive at t = 1
        ts = np.unique(np.concatenate([d[:, 0] for d in res.dgms]))
        check_all(D, res, 2, threshold_of(D, np.inf), coeff, ts=ts[::max(1, len(ts) // 12)])
    assert long == {2: 1, 3: 0}


# ------------------------------------------------------------------------------ random inputs

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@needs_mojo
@SETTINGS
@given(st.integers(5, 9), st.sampled_from([2, 3, 5]), st.sampled_from([1, 2]), st.booleans(), st.integers(0, 2 ** 31))
def test_clouds_with_ties_and_duplicates(n, coeff, maxdim, capped, seed):
    """Integer points in a small grid: many equal distances and repeated points."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, size=(n, 2)).astype(np.float64)
    thr = float(np.sqrt(2.0)) if capped else np.inf
    run_and_check(X, maxdim=maxdim, coeff=coeff, threshold=thr)


@needs_mojo
@SETTINGS
@given(st.integers(5, 9), st.sampled_from([2, 3]), st.sampled_from([1, 2]), st.sampled_from([np.inf, 3.0, 2.0]),
       st.integers(0, 2 ** 31))
def test_distance_matrices(n, coeff, maxdim, thr, seed):
    """Random symmetric matrices with few distinct values (ties everywhere), some capped."""
    rng = np.random.default_rng(seed)
    A = rng.integers(1, 5, size=(n, n)).astype(np.float64)
    D = np.triu(A, 1) + np.triu(A, 1).T
    run_and_check(D, maxdim=maxdim, coeff=coeff, threshold=thr, distance_matrix=True)


@needs_mojo
@SETTINGS
@given(st.integers(6, 10), st.sampled_from([2, 3]), st.sampled_from([np.float32, np.float64]), st.integers(0, 2 ** 31))
def test_point_clouds_in_3d(n, coeff, dtype, seed):
    """Float32 clouds give a float32 filtration: the oracle takes the same distances."""
    rng = np.random.default_rng(seed)
    run_and_check(rng.standard_normal((n, 3)).astype(dtype), maxdim=2, coeff=coeff)


# ------------------------------------------------------------------------------ the API

@needs_mojo
def test_result_shape_and_ripser_view():
    X = noisy_circle()
    only = P.rips_persistence(X, maxdim=1, backend="mojo", return_cocycles=True)
    assert only.cycles is None and len(only.cocycles[1]) == len(only.dgms[1])
    view = only.ripser_cocycles()
    for k, dim in enumerate(view):
        for a, (s, c) in zip(dim, only.cocycles[k]):
            assert a.shape == (len(c), k + 2) and np.array_equal(a[:, :-1], s) and np.array_equal(a[:, -1], c)
    with pytest.raises(ValueError, match="return_cocycles"):
        P.rips_persistence(X, maxdim=1, backend="mojo", return_cycles=True).ripser_cocycles()
    empty = P.rips_persistence(np.zeros((0, 2)), maxdim=1, return_cycles=True)
    assert empty.cycles == [[], []] and empty.cocycles is None


def test_flags_must_be_bool():
    X = noisy_circle()
    with pytest.raises(TypeError, match="return_cycles"):
        P.rips_persistence(X, return_cycles=1)
    with pytest.raises(TypeError, match="return_cocycles"):
        P.rips_persistence(X, return_cocycles="yes")


def test_gudhi_cannot_give_representatives():
    with pytest.raises(RuntimeError, match="gudhi backend cannot give representatives"):
        P.rips_persistence(noisy_circle(), backend="gudhi", return_cycles=True)


def test_auto_never_falls_back_to_gudhi_for_representatives(monkeypatch):
    def unavailable(prob):
        raise BackendUnavailable("mojo: pretend it is missing")

    monkeypatch.setitem(P.op.impls, "mojo", dataclasses.replace(P.op.impls["mojo"], check=unavailable))
    with pytest.raises(BackendUnavailable, match="gudhi backend cannot give representatives"):
        with pytest.warns(Warning):
            P.rips_persistence(noisy_circle(), backend="auto", return_cocycles=True)


@needs_mojo
def test_memory_budget_covers_representatives(monkeypatch):
    """Out of budget: MemoryError with the estimate, never a kill."""
    monkeypatch.setattr(_arrays, "available_memory", lambda: 8 << 20)  # budget floor: 64 MiB
    X = np.random.default_rng(8).standard_normal((120, 12)).astype(np.float32)
    with pytest.raises(MemoryError, match="memory budget"):
        P.rips_persistence(X, maxdim=4, backend="mojo", return_cycles=True, return_cocycles=True)
    res = P.rips_persistence(X[:20], maxdim=2, backend="mojo", return_cycles=True)  # the engine still works after
    assert len(res.cycles[0]) == 20


@needs_mojo
def test_h0_cocycles_are_budgeted(monkeypatch):
    """The H0 cocycles (vertex sets of the dying components) are checked against the
    available memory before they are built: on a line whose gaps grow towards vertex 0 each
    merge kills the growing component, n^2 / 2 entries in all, more than the float32 matrix."""
    n = 200
    X = np.cumsum(np.arange(n, 0, -1, dtype=np.float32))[:, None]  # gap i, i + 1: n - 1 - i
    monkeypatch.setattr(_arrays, "available_memory", lambda: 6 * n * n)  # 4 n^2 bytes of matrix fit, 8 n^2 do not
    with pytest.raises(MemoryError, match="H0 cocycles"):
        P.rips_persistence(X, maxdim=1, backend="mojo", return_cocycles=True)
    res = P.rips_persistence(X, maxdim=1, backend="mojo", return_cycles=True)
    assert res.cocycles is None and len(res.cycles[0]) == n


@needs_mojo
def test_cancels_at_random_moments_with_representatives():
    """Cancels landing anywhere (the reduction with cocycle records, the cycles stage) never
    crash the engine, and the next run gives the same diagrams and representatives."""
    X = np.random.default_rng(0).standard_normal((400, 6))
    kw = dict(maxdim=2, backend="mojo", progress=False, return_cycles=True, return_cocycles=True)
    t0 = time.perf_counter()
    full = P.rips_persistence(X, **kw)
    seconds = time.perf_counter() - t0
    for at in np.random.default_rng(1).uniform(0.0, seconds, 10):
        with aura_lab.cancellable() as ctl:
            threading.Timer(at, ctl.cancel).start()
            try:
                P.rips_persistence(X, **kw)
            except Cancelled:
                pass
    again = P.rips_persistence(X, **kw)
    assert all(np.array_equal(a, b) for a, b in zip(full.dgms, again.dgms))
    for reps, reps_again in ((full.cycles, again.cycles), (full.cocycles, again.cocycles)):
        for dim, dim_again in zip(reps, reps_again):
            assert all(np.array_equal(s, t) and np.array_equal(c, e) for (s, c), (t, e) in zip(dim, dim_again))
