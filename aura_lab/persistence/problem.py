"""``rips_persistence``'s validated problem: the ``op``, the argument checks, the filtration
(the validated full matrix and the threshold actually used) and the landmarks of ``n_perm``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .. import _arrays as A
from .._abi import Enumeration, Flags, Slots
from ..distance import METRICS, pairwise_distances
from ..registry import MAX_WORK, Op
from . import inputs as G


def _simplex_count(size: dict) -> float:
    """Simplices of the full complex up to dimension maxdim + 1 (what the engine may visit),
    counted exactly up to ``MAX_WORK`` and capped there (the sum reaches ~1e330 for n = 1100,
    maxdim = 600, past what a float holds)."""
    n, top = int(size["n"]), int(size["maxdim"]) + 2
    total, term = 0, 1
    for k in range(1, min(top, n) + 1):
        term = term * (n - k + 1) // k  # comb(n, k), exactly
        total += term
        if total >= MAX_WORK:
            return MAX_WORK
    return float(total)


#: measured engine cost per simplex of the full complex: 0.3 ns on dragon (n = 2000, maxdim 1:
#: 1.3e9 simplices in 440 ms), the cheapest of the standard sets (sphere3: 13 ns) - a lower
#: bound, so that the thread policy errs towards threads
op = Op("persistence", reference="gudhi", auto_order=("mojo", "gudhi"), work=_simplex_count, ns_per_work=0.3)

#: largest ``maxdim`` taken (the result is a list of ``maxdim + 1`` diagrams)
MAX_MAXDIM = 1024
#: largest coefficient prime (gudhi's limit: p * p must fit its 32-bit arithmetic)
MAX_COEFF = 46337
#: relative disagreement tolerated between D[i, j] and D[j, i] (text files round distances), dense or sparse
SYM_RTOL = G.SYM_RTOL
#: the reps field of the engine's parameter block: which representatives to compute (bits)
WANT = Flags("want", ("cocycles", "cycles"), prefix="WANT_")
REPS_COCYCLES, REPS_CYCLES = WANT.enum.COCYCLES, WANT.enum.CYCLES
#: the progress stages of the edge collapse (edges processed) and the batched engine (inputs
#: done), after the engine's own: 2 k building and 2 k + 1 reducing dimension k <= MAX_MAXDIM
STAGE = Enumeration("stage", ("collapse", "batch"), prefix="STAGE_", start=2 * MAX_MAXDIM + 2)

# What the persistence kernels write back, declared once for both sides (the ABIs in kernels.py,
# batch.py and collapse.py generate them into their abi.mojo files in kernels/aura_kernels/persistence/; see aura_lab/_abi.py).
#: the status word of every persistence kernel
STATUS = Enumeration("status", ("ok", "out_of_memory", "cancelled", "inconsistent"), prefix="STATUS_")
#: the engine's info[]: status, the (dim, birth, death) float64 triples' address and count, the
#: dimension being built and the bytes it asked for when the memory budget ran out, the peak
#: bytes the engine held, the representative records' address (0: none) and length in words
INFO = Slots("info", ("status", "bars", "nbars", "fail_dim", "fail_bytes", "peak_bytes", "reps", "nreps"),
             prefix="INFO_")
#: the engine's per-dimension counters, stats[dim * STAT_WORDS + slot] (``last_stats()``): simplices
#: of the dimension enumerated (edges for dims 0 and 1), columns handed to the reduction,
#: candidates skipped in a zero-persistence apparent pair, and as pivots of the previous
#: dimension (clearing), columns paired by the emergent shortcut, columns reduced with a heap,
#: column / apparent-facet additions, cofacets pushed into the heap; nanoseconds spent on edges +
#: sort + union-find (dim 0) or column assembly, the parallel emergent-pair search, the
#: sequential reduction
STAT = Slots("stat", ("simplices", "columns", "apparent", "cleared", "emergent", "reduced", "additions", "pushes",
                      "assemble_ns", "search_ns", "reduce_ns"), prefix="STAT_")
#: the kind of a representative record (result._parse_reps reads them)
KIND = Enumeration("kind", ("cocycle", "cycle", "merges"), prefix="KIND_")
Status, Info, Kind = STATUS.enum, INFO.enum, KIND.enum


@dataclass(frozen=True)
class PersistenceProblem:
    """A validated ``rips_persistence`` call: ``X`` the ``(n, d)`` point cloud or, with
    ``is_matrix``, the square distance matrix (shape checked; its entries are checked when the
    filtration is built). ``filtration`` (built once, on first use by a backend, so that a
    backend that cannot run fails before any O(n^2) work) is the validated full symmetric
    matrix and the threshold actually used."""

    X: np.ndarray
    is_matrix: bool
    metric: str
    maxdim: int
    threshold: float
    coeff: int
    device: str = "cpu"
    #: diagrams returned (``maxdim`` as given; ``maxdim`` itself is capped at n - 2)
    reported_maxdim: int = -1
    reps: int = 0  #: REPS_COCYCLES | REPS_CYCLES: the representatives asked for
    #: with ``n_perm``: the landmarks' indices into the input and their covering radius
    idx_perm: np.ndarray | None = None
    r_cover: float | None = None
    #: run the mojo engine on the edge-collapsed radius graph (``collapse.resolve``), and why
    collapse: bool = False
    collapse_why: str = ""

    @property
    def returns_result(self) -> bool:
        """Whether the call returns a ``PersistenceResult`` (representatives or landmarks)."""
        return bool(self.reps) or self.idx_perm is not None

    @property
    def births(self) -> np.ndarray | None:
        """Vertex birth times of a sparse input with a nonzero diagonal, else ``None``."""
        return self.X.births if isinstance(self.X, G.SparseEdges) else None

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @property
    def size(self) -> dict:
        return {"n": self.n, "maxdim": self.maxdim}

    @cached_property
    def filtration(self) -> tuple[np.ndarray, float]:
        D = _distance_matrix(self.X, self.metric, self.is_matrix)
        return D, effective_threshold(D, self.threshold)


def _validate(X, maxdim, threshold, metric, distance_matrix, coeff, reps=0) -> PersistenceProblem:
    """The arguments checked (cheap checks only: the O(n^2) matrix is ``filtration``)."""
    maxdim = _check_int("maxdim", maxdim, lo=0)
    if maxdim > MAX_MAXDIM:
        raise ValueError(f"maxdim: at most {MAX_MAXDIM} (one diagram is returned per dimension; "
                         f"H_k is empty for k > n - 2 anyway), got {maxdim}")
    coeff = _check_coeff(coeff)
    threshold = _check_threshold(threshold)
    if not isinstance(metric, str) or metric not in (*METRICS, "precomputed"):
        raise ValueError(f"metric: unknown metric {metric!r}; valid: {', '.join(METRICS)}, precomputed")
    if distance_matrix and metric not in ("euclidean", "precomputed"):
        raise ValueError(f"metric: {metric!r} has no effect on a distance matrix (distance_matrix=True); leave the default")
    is_matrix = bool(distance_matrix) or metric == "precomputed"
    sparse_input = G.is_sparse(X) or (is_matrix and G.is_edge_list(X))
    if sparse_input and not is_matrix:
        raise ValueError("X: a scipy.sparse matrix is read as a distance matrix: pass distance_matrix=True")
    if sparse_input:
        edges = G.from_sparse(X) if G.is_sparse(X) else G.from_edge_list(X)
        return PersistenceProblem(edges, True, metric, _engine_dims(edges.n, maxdim), threshold, coeff,
                                  reported_maxdim=maxdim, reps=reps)
    Xn = A.to_numpy(X, "X")
    if is_matrix:
        if Xn.ndim != 2 or Xn.shape[0] != Xn.shape[1]:
            raise ValueError(f"X: a distance matrix must be square (n, n), got shape {Xn.shape}")
        if Xn.size and np.any(np.diagonal(Xn) != 0):  # vertex birth times: the sparse input's path
            edges = G.from_dense(Xn)
            return PersistenceProblem(edges, True, metric, _engine_dims(edges.n, maxdim), threshold, coeff,
                                      reported_maxdim=maxdim, reps=reps)
    else:
        if Xn.ndim != 2:
            raise ValueError(f"X: expected a 2-D point cloud (n, d), got {Xn.ndim}-D shape {Xn.shape}")
        if not np.all(np.isfinite(Xn)):
            raise ValueError("X: the point cloud contains NaN or infinite coordinates")
    # dimensions above n - 2 are empty: they are not computed (any backend), only returned
    return PersistenceProblem(Xn, is_matrix, metric, _engine_dims(Xn.shape[0], maxdim), threshold, coeff,
                              reported_maxdim=maxdim, reps=reps)


def _landmarks(prob: PersistenceProblem, n_perm) -> PersistenceProblem:
    """The problem on ``n_perm`` furthest-point landmarks (``None``: unchanged)."""
    if n_perm is None:
        return prob
    n_perm = _check_int("n_perm", n_perm, lo=1)
    if isinstance(prob.X, G.SparseEdges):
        raise ValueError("n_perm: landmarks are not chosen on sparse input (as ripser.py); pass a dense matrix or points")
    if n_perm > prob.n:
        raise ValueError(f"n_perm: at most the number of points, {prob.n}, got {n_perm}")
    if prob.is_matrix:
        D = prob.filtration[0]
        idx, r = G.greedy_permutation(lambda i: D[i], prob.n, n_perm)
        sub = D[np.ix_(idx, idx)]
    else:
        X = prob.X
        idx, r = G.greedy_permutation(lambda i: pairwise_distances(X[i:i + 1], X, metric=prob.metric)[0], prob.n, n_perm)
        sub = X[idx]
    return PersistenceProblem(np.ascontiguousarray(sub), prob.is_matrix, prob.metric, _engine_dims(n_perm, prob.reported_maxdim),
                              prob.threshold, prob.coeff, reported_maxdim=prob.reported_maxdim, reps=prob.reps,
                              idx_perm=idx, r_cover=r)


def _engine_dims(n: int, maxdim: int) -> int:
    """Dimensions the engine computes: H_k needs k + 2 vertices to be nonzero."""
    return min(maxdim, max(0, n - 2))


def enclosing_radius(D: np.ndarray) -> float:
    """``min_i max_j D[i, j]``: from this value on the Rips complex is a cone (0 for n <= 1)."""
    if D.shape[0] <= 1:
        return 0.0
    return float(np.min(np.max(D, axis=1)))


def effective_threshold(D: np.ndarray, threshold: float = np.inf) -> float:
    """The threshold actually used: ``min(threshold, enclosing radius)``; if that is infinite
    (every row has an infinite entry) the largest finite distance. Exactly representable in the
    dtype of ``D`` (rounded down), so that ``D[i, j] <= t`` means the same in every backend."""
    t = min(float(threshold), enclosing_radius(D))
    if not np.isfinite(t):
        fin = D[np.isfinite(D)]
        t = float(fin.max()) if fin.size else 0.0
    return A.round_down(t, D.dtype)


def _edges_threshold(E: "G.SparseEdges", threshold: float) -> float:
    """effective_threshold of E's dense matrix (inf off the edges), without building it."""
    n = E.n
    if n <= 1:
        return A.round_down(min(float(threshold), 0.0), E.d.dtype)
    ends = np.concatenate([E.i, E.j])
    deg = np.bincount(ends, minlength=n)
    rowmax = np.zeros(n, np.float64)
    np.maximum.at(rowmax, ends, np.concatenate([E.d, E.d]).astype(np.float64))
    full = deg == n - 1
    enclosing = float(rowmax[full].min()) if full.any() else np.inf
    t = min(float(threshold), enclosing)
    if not np.isfinite(t):
        t = float(E.d.max()) if E.d.size else 0.0
    return A.round_down(t, E.d.dtype)


# ------------------------------------------------------------------------------ validation

def _check_int(name: str, v, lo: int) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(v).__name__}")
    v = int(v)
    if v < lo:
        raise ValueError(f"{name}: must be >= {lo}, got {v}")
    return v


def _is_prime(p: int) -> bool:
    if p < 2:
        return False
    return all(p % q for q in range(2, math.isqrt(p) + 1))


def _check_coeff(coeff) -> int:
    coeff = _check_int("coeff", coeff, lo=0)
    if not _is_prime(coeff) or coeff > MAX_COEFF:
        raise ValueError(f"coeff: must be a prime between 2 and {MAX_COEFF} (the field Z/p), got {coeff}")
    return coeff


def _check_threshold(threshold) -> float:
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise TypeError(f"threshold: expected a number, got {type(threshold).__name__}") from None
    if np.isnan(t) or t < 0:
        raise ValueError(f"threshold: must be >= 0 (inf for the enclosing radius), got {threshold}")
    return t


def _check_flag(name: str, v) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {type(v).__name__}")
    return bool(v)


def _distance_matrix(Xn: np.ndarray, metric: str, is_matrix: bool) -> np.ndarray:
    """The full symmetric ``(n, n)`` float32/float64 C-contiguous filtration matrix of the input."""
    if isinstance(Xn, G.SparseEdges):
        return Xn.dense()
    if not is_matrix:
        n = Xn.shape[0]
        dtype = A.result_float_dtype(Xn)
        if n == 0:
            return np.zeros((0, 0), dtype)
        D = pairwise_distances(Xn, metric=metric)
        if np.isnan(D).any():
            raise ValueError(f"X: the {metric} distance is undefined (NaN) for some pairs, e.g. zero vectors")
        return D
    if Xn.ndim != 2 or Xn.shape[0] != Xn.shape[1]:
        raise ValueError(f"X: a distance matrix must be square (n, n), got shape {Xn.shape}")
    n = Xn.shape[0]
    dtype = A.result_float_dtype(Xn)
    exact = _check_matrix(Xn, dtype)
    if exact and Xn.dtype == dtype and Xn.flags.c_contiguous:  # already the filtration: no copy
        return Xn
    A.check_memory(n * n * dtype.itemsize, f"the ({n}, {n}) {dtype.name} copy of the distance matrix")
    D = np.array(Xn, dtype=dtype, order="C", copy=True)
    if not exact:
        for a, b in _row_blocks(n):  # the lower triangle counts: copy it over the upper one
            upper = np.arange(n)[None, :] > np.arange(a, b)[:, None]
            D[a:b][upper] = D[:, a:b].T[upper]
    return D


def _row_blocks(n: int):
    """(a, b) row ranges of about 256 KiB of float64 each: the temporaries of ``_check_matrix``
    stay small next to the matrix (the peak memory of a call counts them; fract-r's 512 x 512
    matrix checked at once took 3x its size on top)."""
    rows = max(1, (256 << 10) // max(1, n * 8))
    return [(a, min(n, a + rows)) for a in range(0, n, rows)]


def _check_matrix(Xn: np.ndarray, dtype) -> bool:
    """ValueError naming X for NaN, negative or asymmetric entries (beyond ``SYM_RTOL``) of the
    square matrix ``Xn`` read as ``dtype``; returns whether it is exactly symmetric."""
    exact = True
    for a, b in _row_blocks(Xn.shape[0]):
        blk, tr = Xn[a:b].astype(dtype, copy=False), Xn[:, a:b].T.astype(dtype, copy=False)  # tr[r, j] = X[j, a + r]
        if np.isnan(blk).any():
            raise ValueError("X: the distance matrix contains NaN")
        if (blk < 0).any():
            raise ValueError("X: the distance matrix has negative entries")
        if exact and np.array_equal(blk, tr):
            continue
        exact = False
        with np.errstate(invalid="ignore"):
            bad = ~((np.abs(blk - tr) <= SYM_RTOL * np.maximum(blk, tr)) | (np.isinf(blk) & np.isinf(tr)))
        if bad.any():
            r, j = np.argwhere(bad)[0]
            i = a + r
            raise ValueError(f"X: the distance matrix is not symmetric: D[{i}, {j}] = {blk[r, j]} but D[{j}, {i}] = {tr[r, j]}")
    return exact
