"""Vietoris-Rips persistent homology: ``rips_persistence(X, maxdim=1, ...)``.

Backends:

* ``gudhi`` - the reference: ``gudhi.RipsComplex`` on the same distance matrix, edge collapse,
  expansion to ``maxdim + 1``, persistent cohomology over Z/``coeff`` in float64.
* ``mojo`` - aura_lab's own engine (``kernels/aura_kernels/persistence/``, binding
  ``kernels/persistence.mojo``), the ripser algorithm family written
  fresh: H0 by union-find over the sorted edges, H1..H_maxdim by persistent cohomology with
  clearing, implicit coboundaries through the combinatorial number system, apparent and emergent
  pairs; both cores for the edge list, the apparent-pair filters, the column assembly and the
  column reduction (rounds of a parallel phase and a short sequential pairing phase). Two
  modes: on the full matrix (SIMD row scans over all n vertices) or on the radius graph in CSR
  form (cofacets from the intersection of neighbour lists: the cost is the degree, not n; no
  (n, n) matrix). ``_ENGINE`` (internal) picks one; by default sparse input well below complete
  runs sparse, everything else dense (``last_dispatch().reason`` says which and why).

``gudhi`` is one of the registry's reference backends (``aura_lab.registry.REFERENCE_BACKENDS``);
``backend="auto"`` runs mojo, else (mojo unavailable, or the problem past the engine's limits)
falls back to gudhi with an ``AuraFallbackWarning``.

Conventions (shared by both backends, so their diagrams agree bar for bar):

* Filtration values are the pairwise distances: float32 inputs give a float32 filtration (as
  ripser and giotto-ph), float64 and every other numeric dtype a float64 one.
* Vertices are born at 0 (sparse input with a nonzero diagonal: at their birth times, H0 only,
  see ``aura_lab.rips_graph``); an edge {i, j}, i > j, enters at D[i, j] (the lower triangle, as gudhi
  reads a full matrix; ripser.py reads the upper one, which matters only for matrices that are
  not exactly symmetric: on fract-r, whose rounded entries differ by up to 1e-5, the diagrams
  then differ by 1e-6); a simplex at its largest edge. Edges longer than the threshold, and
  infinite distances, are never inserted.
* The threshold defaults to (and is capped at) the enclosing radius min_i max_j D[i, j], from
  which on the complex is a cone: the barcode is the one of the full Rips filtration, with
  exactly one infinite bar, in H0, when the cloud is connected.
* Only bars with death > birth are reported; infinite deaths are ``inf``; each dimension is a
  ``(k, 2)`` float64 array sorted by birth, then death.
"""

from __future__ import annotations

import ctypes
import math
import time
import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .. import _arrays as A
from .. import _control, _mojo
from .._abi import ADDR, BOOL, FLOAT, INT, KernelABI
from ..distance import METRICS, pairwise_distances
from ..neighbors import csr_from_pairs, radius_graph
from ..errors import Cancelled, UnsupportedProblem
from ..registry import MAX_WORK, Op, last_dispatch
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
#: per-dimension statistics the mojo engine reports (``last_stats()``)
STAT_FIELDS = ("simplices", "columns", "apparent", "cleared", "emergent", "reduced", "additions", "pushes",
               "assemble_s", "search_s", "reduce_s")
_NSTATS = len(STAT_FIELDS)
#: the engine's parameter block (kernels/aura_kernels/persistence_abi.mojo is generated from it);
#: outputs: info (8,) int64 and stats ((maxdim + 1) * len(STAT_FIELDS),) int64
#: dense: ``dist`` the (n, n) matrix, ``indptr``/``indices`` 0; ``sparse``: ``dist`` the CSR
#: distances of the radius graph, ``indptr`` (n + 1,) int64, ``indices`` int32 (``_check_csr``)
ABI = KernelABI("persistence", [("dtype_bits", INT), ("dist", ADDR), ("n", INT), ("maxdim", INT), ("threshold", FLOAT),
                                ("modulus", INT), ("reps", INT), ("threads", INT), ("budget", INT), ("info", ADDR), ("stats", ADDR),
                                ("sparse", BOOL), ("indptr", ADDR), ("indices", ADDR)])


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


# ------------------------------------------------------------------------------ public API

def rips_persistence(X, *, maxdim: int = 1, threshold: float = np.inf, metric: str = "euclidean",
                     distance_matrix: bool = False, coeff: int = 2, backend: str = "auto",
                     progress: bool | str = "auto", return_cycles: bool = False,
                     return_cocycles: bool = False, n_perm: int | None = None) -> "list[np.ndarray] | PersistenceResult":
    """Persistence diagrams of the Vietoris-Rips filtration of ``X``, and on request a
    representative cycle and cocycle of every bar.

    Args:
        X: ``(n, d)`` point cloud, or with ``distance_matrix=True`` (or ``metric="precomputed"``)
            an ``(n, n)`` distance matrix: non-negative, no NaN, symmetric to within 0.1 % per
            entry (its lower triangle ``D[i, j], i > j`` is used); ``inf`` entries mean "no edge";
            a nonzero diagonal gives vertex birth times, as ripser.py and giotto-ph read it (see
            sparse input below; unlike ripser.py, which then drops zero entries, an off-diagonal 0
            stays an edge of length 0). numpy arrays, torch CPU tensors or anything ``np.asarray`` takes. Also, with
            ``distance_matrix=True``, a ``scipy.sparse`` matrix (any format) or an edge list
            ``(i, j, d)`` of three 1-D arrays, as ripser.py reads sparse input: a stored entry is an
            edge (an explicit 0 one of length 0), a missing one none; an edge may be stored in one
            triangle or in both (then equal within 0.1 %); a nonzero diagonal gives vertex birth
            times, which change H0 only (``aura_lab.rips_graph``). The engines still build the
            dense ``(n, n)`` matrix (``inf`` off the edges): ``MemoryError`` up front when it does
            not fit.
        maxdim: highest homology dimension (>= 0).
        threshold: largest edge length inserted (>= 0). The default ``inf`` means the enclosing
            radius, as ripser; larger values are capped there (the barcode is the same).
        metric: for point clouds, one of ``aura_lab.distance.METRICS``; distances come from
            ``aura_lab.pairwise_distances`` (float32 in -> float32 filtration).
        distance_matrix: ``X`` is a distance matrix.
        coeff: prime p of the coefficient field Z/p (2 <= p <= 46337).
        backend: ``"auto"`` (mojo, else gudhi), ``"mojo"`` or ``"gudhi"``.
        progress: ``True`` shows a ``tqdm.auto`` bar fed from the mojo engine's own counters
            (per dimension: simplices assembled, then columns reduced); ``"auto"`` shows it
            only once a call estimated to be long has run for ``PROGRESS_AFTER_S`` seconds;
            ``False`` never. (gudhi reports no progress.)
        return_cycles: also return a cycle of every bar (mojo engine only).
        return_cocycles: also return a cocycle of every bar (mojo engine only).
        n_perm: compute on ``n_perm`` landmarks (1 <= n_perm <= n) chosen by furthest-point
            sampling (ripser.py's ``get_greedy_perm``: point 0 first, then each the point furthest
            from those chosen); the result is a ``PersistenceResult`` whose ``idx_perm`` are their
            indices (representatives' vertices are rows of ``X``, as ripser.py's) and ``r_cover``
            their covering radius (every point lies within it of a
            landmark, so the diagrams are within ``r_cover`` of the full cloud's in bottleneck
            distance, times 2 for the Rips filtration's scale).

    Representatives (``return_cycles`` / ``return_cocycles``; K_t is the complex at scale t,
    capped at the threshold actually used; an infinite bar has d = inf):

    * the *cycle* of an H_k bar [b, d) is a k-cycle over Z/p (boundary 0) made of simplices of
      diameter <= b, and at every t in [b, d) the cycles of the bars alive at t (b <= t < d)
      are linearly independent modulo the boundaries of K_t. Computed by involuted persistent
      homology (Cufar & Virk 2021): with the pairs known from cohomology, the boundary of the
      bar's death simplex is reduced in homology (an infinite bar: the chain whose boundary
      reduction of the birth simplex gives zero). H0: the single vertex whose component dies
      at d (the component's smallest vertex; for an infinite bar, its component's).
    * the *cocycle* of [b, d) has zero coboundary on every (k+1)-simplex of diameter < d, and
      at every t the restrictions of the cocycles alive at t pair with the cycles alive at t
      through a nonsingular matrix (they form a basis of H^k(K_t)). It is the V column of the
      bar's column in the cohomology reduction. H0: the indicator of the dying component
      just before d (for an infinite bar, of its component at the threshold).
    * each is a pair ``(simplices, coeffs)``: an ``(m, k + 1)`` int64 array of vertex indices
      (rows ascending) and ``(m,)`` int64 coefficients in 1..p-1; signs (p > 2) follow the
      alternating-face orientation of simplices with ascending vertices,
      boundary [v0..vk] = sum_i (-1)^i [v0..^vi..vk].
    * the gudhi backend cannot give them (its flag-complex generators are vertex pairs, the
      longest edges of the birth and death simplices, not cycles): ``RuntimeError``; under
      ``"auto"`` only the mojo engine is tried.

    Ctrl-C (Jupyter's Interrupt) stops the mojo engine within a few milliseconds: its memory
    is freed and ``KeyboardInterrupt`` raised; ``aura_lab.cancellable`` stops it from another
    thread.

    Returns:
        ``maxdim + 1`` arrays; entry k is ``(m_k, 2)`` float64 (birth, death) of the H_k bars with
        death > birth, sorted by birth then death; infinite deaths are ``inf``. With either
        ``return_*`` flag a ``PersistenceResult``: ``dgms`` that list, ``cycles[k][i]`` /
        ``cocycles[k][i]`` the representatives of bar ``dgms[k][i]`` (``None`` when not asked).
    """
    reps = _check_flag("return_cocycles", return_cocycles) * REPS_COCYCLES | _check_flag("return_cycles", return_cycles) * REPS_CYCLES
    prob = _validate(X, maxdim, threshold, metric, distance_matrix, coeff, reps)
    prob = _landmarks(prob, n_perm)
    progress = _check_progress(progress)
    if reps and prob.births is not None:
        raise ValueError("X: representatives (return_cycles / return_cocycles) are not computed for input "
                         "with vertex birth times (a nonzero diagonal)")
    if reps and op.chosen(backend) == "gudhi":
        raise RuntimeError(GUDHI_NO_REPS)
    if prob.n == 0:
        op.check_backend(backend)
        op.record("none", backend, "empty input: nothing to compute", 0.0)
        empty = [np.empty((0, 2)) for _ in range(prob.reported_maxdim + 1)]
        none = [[] for _ in empty]
        if prob.returns_result:
            return _result(Bars(empty, none if reps & REPS_CYCLES else None, none if reps & REPS_COCYCLES else None), prob)
        return empty
    if progress is True or (progress == "auto" and op.is_long(prob.size)):
        bar = ProgressBar(after_s=0.0 if progress is True else PROGRESS_AFTER_S)
        try:
            with _control.watching(bar):
                dgms = op.run(backend, prob)
        finally:
            bar.close()
    else:
        dgms = op.run(backend, prob)
    rec = last_dispatch()
    if rec is not None and rec.backend == "mojo" and _last_stats is not None:
        rec.reason += f"; {_last_stats['engine']} engine: {_last_stats['engine_reason']}"
    if prob.births is not None:
        dgms = [G.h0_with_births(prob.X, _edges_threshold(prob.X, prob.threshold)), *dgms[1:]]
    if prob.returns_result:
        return _result(dgms if reps else Bars(dgms, None, None), prob)
    return _finish(dgms, prob.reported_maxdim)


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


def _check_flag(name: str, v) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {type(v).__name__}")
    return bool(v)


def _check_progress(progress) -> bool | str:
    if isinstance(progress, bool) or (isinstance(progress, str) and progress == "auto"):
        return progress
    raise TypeError(f"progress: expected True, False or 'auto', got {progress!r}")


#: with ``progress="auto"``, a bar appears once the call has run this long
PROGRESS_AFTER_S = 2.0


class ProgressBar:
    """A ``tqdm.auto`` bar fed from the engine's control words (``aura_lab._control``): stage
    ``2k`` is building the k-simplex columns (k = 0: scanning the edges), ``2k + 1`` reducing
    them; ``done``/``total`` count simplices or columns of that stage."""

    def __init__(self, after_s: float = 0.0):
        self.after_s = after_s
        self.started = time.perf_counter()
        self.bar = None
        self.stage = None

    @staticmethod
    def describe(stage: int) -> str:
        k, reducing = divmod(stage, 2)
        if k == 0 and not reducing:
            return "edges: rows scanned"
        return f"dim {k}: columns reduced" if reducing else f"dim {k}: cofacets of dim {k - 1} simplices"

    def __call__(self, ctl) -> None:
        stage, done, total = ctl.progress()
        if total <= 0 or time.perf_counter() - self.started < self.after_s:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=self.describe(stage), leave=False, mininterval=0.2)
            self.stage = stage
        elif stage != self.stage:
            self.bar.reset(total=total)
            self.bar.set_description(self.describe(stage), refresh=False)
            self.stage = stage
        self.bar.update(min(done, total) - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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


def last_stats() -> dict | None:
    """Per-dimension counters of the last mojo run in this process: simplices enumerated,
    columns reduced, apparent pairs skipped, columns cleared, emergent pairs, columns reduced
    with a heap, column additions, cofacets pushed into the heap; seconds spent assembling
    columns (edges, sort and union-find for dimension 0), searching emergent pairs, reducing,
    and their sum (per dimension); ``peak_bytes``: the most the engine held at once;
    ``estimate_bytes`` and ``estimate_lower_bytes``: the estimate of that peak and its sure
    lower bound made before the run, ``estimate_simplices`` the simplex counts estimated per
    dimension (``estimate_engine_bytes``)."""
    return _last_stats


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
    A.check_memory(n * n * dtype.itemsize, f"the ({n}, {n}) {dtype.name} copy of the distance matrix")
    D = np.array(Xn, dtype=dtype, order="C", copy=True)
    rows = max(1, (16 << 20) // max(1, n * 8))  # temporaries of ~16 MiB per block of rows
    for a in range(0, n, rows):
        b = min(n, a + rows)
        blk, tr = D[a:b], D[:, a:b].T  # tr[r, j] = D[j, a + r]
        if np.isnan(blk).any():
            raise ValueError("X: the distance matrix contains NaN")
        if (blk < 0).any():
            raise ValueError("X: the distance matrix has negative entries")
        with np.errstate(invalid="ignore"):
            bad = ~((np.abs(blk - tr) <= SYM_RTOL * np.maximum(blk, tr)) | (np.isinf(blk) & np.isinf(tr)))
        if bad.any():
            r, j = np.argwhere(bad)[0]
            i = a + r
            raise ValueError(f"X: the distance matrix is not symmetric: D[{i}, {j}] = {D[i, j]} but D[{j}, {i}] = {D[j, i]}")
    for a in range(0, n, rows):  # the lower triangle counts: copy it over the upper one
        b = min(n, a + rows)
        upper = np.arange(n)[None, :] > np.arange(a, b)[:, None]
        D[a:b][upper] = D[:, a:b].T[upper]
    return D


# ------------------------------------------------------------------------------ results

def _finish(dgms, maxdim: int) -> list[np.ndarray]:
    return [d for d, _ in _sorted(dgms, maxdim)]


def _sorted(dgms, maxdim: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per dimension the diagram as returned (bars with death > birth, sorted by birth then
    death) and the positions of its bars in ``dgms[k]``."""
    out = []
    for k in range(maxdim + 1):
        a = np.asarray(dgms[k], np.float64).reshape(-1, 2) if k < len(dgms) else np.empty((0, 2))
        keep = np.flatnonzero(a[:, 1] > a[:, 0])
        a = a[keep]
        order = np.lexsort((a[:, 1], a[:, 0]))
        out.append((np.ascontiguousarray(a[order]), keep[order]))
    return out


#: the reps field of the engine's parameter block (kernels/aura_kernels/persistence/reps.mojo)
REPS_COCYCLES, REPS_CYCLES = 1, 2
GUDHI_NO_REPS = ("rips_persistence: the gudhi backend cannot give representatives: its flag persistence generators "
                 "(SimplexTree.flag_persistence_generators) are vertex pairs (the longest edges of a bar's birth and "
                 "death simplices), not cycles or cocycles; use backend='mojo' (or 'auto')")

Chain = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Bars:
    """What a backend returns when representatives are asked for: per dimension the bars in
    the engine's order and their cycles / cocycles (``None`` when not asked for)."""

    dgms: list[np.ndarray]
    cycles: list[list[Chain]] | None
    cocycles: list[list[Chain]] | None


@dataclass(frozen=True)
class PersistenceResult:
    """``rips_persistence(..., return_cycles=..., return_cocycles=...)``: ``dgms`` the list of
    diagrams, and ``cycles[k][i]`` / ``cocycles[k][i]`` the ``(simplices, coeffs)`` of bar
    ``dgms[k][i]`` (see ``rips_persistence`` for their definitions), ``None`` when not asked."""

    dgms: list[np.ndarray]
    cycles: list[list[Chain]] | None
    cocycles: list[list[Chain]] | None
    coeff: int
    #: with ``n_perm``: the landmarks' indices into the input, and their covering radius
    idx_perm: np.ndarray | None = None
    r_cover: float | None = None

    def ripser_cocycles(self) -> list[list[np.ndarray]]:
        """The cocycles in ripser.py's shape (``do_cocycles=True``): per dimension and bar an
        ``(m, k + 2)`` int64 array of k + 1 vertices and the coefficient (H0 included)."""
        if self.cocycles is None:
            raise ValueError("return_cocycles: this result was computed without cocycles")
        return [[np.column_stack([s, c]) for s, c in dim] for dim in self.cocycles]


def _result(bars: Bars, prob: PersistenceProblem) -> PersistenceResult:
    """The sorted diagrams with their representatives in the same order."""
    dgms, cycles, cocycles = [], [] if bars.cycles is not None else None, [] if bars.cocycles is not None else None
    for k, (dgm, pos) in enumerate(_sorted(bars.dgms, prob.reported_maxdim)):
        dgms.append(dgm)
        for reps, out in ((bars.cycles, cycles), (bars.cocycles, cocycles)):
            if reps is not None:
                out.append([reps[k][i] for i in pos] if k < len(reps) else [])
    if prob.idx_perm is not None:  # landmarks' vertices as rows of X, as ripser.py
        cycles, cocycles = (None if r is None else [[_on_rows(c, prob.idx_perm) for c in dim] for dim in r]
                            for r in (cycles, cocycles))
    return PersistenceResult(dgms, cycles, cocycles, prob.coeff, prob.idx_perm, prob.r_cover)


def _on_rows(chain: Chain, idx_perm: np.ndarray) -> Chain:
    """A chain over the landmarks with its vertices as indices into the input's rows."""
    simplices, coeffs = chain
    return idx_perm[simplices], coeffs


def _parse_reps(words: np.ndarray, dims: np.ndarray, want: int) -> tuple[list, list]:
    """The engine's representative records (reps.mojo) as per-dimension lists of chains, in
    the engine's bar order (``dims``: the dimension of each bar)."""
    first = {k: int(np.searchsorted(dims, k)) for k in range(int(dims.max()) + 1 if dims.size else 0)}
    counts = np.bincount(dims, minlength=len(first)) if dims.size else np.zeros(0, np.int64)
    cycles = [[None] * int(c) for c in counts]
    cocycles = [[None] * int(c) for c in counts]
    i = 0
    while i < words.size:
        bar, kind, nv, m = (int(v) for v in words[i:i + 4])
        block = words[i + 4:i + 4 + m * (nv + 1)].reshape(m, nv + 1)
        i += 4 + m * (nv + 1)
        if kind == _KIND_MERGES:
            _h0_reps(block, first.get(0, 0), cycles[0], cocycles[0] if want & REPS_COCYCLES else None)
            continue
        k = int(dims[bar])
        (cycles if kind == _KIND_CYCLE else cocycles)[k][bar - first[k]] = (np.ascontiguousarray(block[:, :nv]),
                                                                          np.ascontiguousarray(block[:, nv]))
    return (cycles if want & REPS_CYCLES else None), (cocycles if want & REPS_COCYCLES else None)


_KIND_COCYCLE, _KIND_CYCLE, _KIND_MERGES = 0, 1, 2


def _h0_reps(merges: np.ndarray, first: int, cycles: list, cocycles: list | None) -> None:
    """H0 representatives from the union-find merges (dying root, surviving root or -1 for
    an essential class, bar or -1): the dying root; with ``cocycles``, the dying component's
    vertices (their total size checked against the available memory first)."""
    ones = np.ones(1, np.int64)
    for dying, surviving, bar in merges.tolist():
        if bar >= 0:
            cycles[bar - first] = (np.array([[dying]], np.int64), ones.copy())
    if cocycles is None:
        return
    size, total = {}, 0
    for dying, surviving, bar in merges.tolist():
        total += size.get(dying, 1) if bar >= 0 else 0
        if surviving >= 0:
            size[surviving] = size.get(surviving, 1) + size.pop(dying, 1)
    A.check_memory(16 * total, f"the H0 cocycles ({total} vertex entries)")
    members: dict[int, list[int]] = {}
    for dying, surviving, bar in merges.tolist():
        comp = members.pop(dying, [dying]) if surviving >= 0 else members.get(dying, [dying])
        if bar >= 0:
            cocycles[bar - first] = (np.sort(np.array(comp, np.int64)).reshape(-1, 1), np.ones(len(comp), np.int64))
        if surviving >= 0:
            members.setdefault(surviving, [surviving]).extend(comp)


# ------------------------------------------------------------------------------ gudhi reference

def _gudhi_limits(prob: PersistenceProblem) -> None:
    if prob.reps:
        raise UnsupportedProblem(GUDHI_NO_REPS)


@op.impl("gudhi", check=_gudhi_limits)
def _gudhi(prob: PersistenceProblem) -> list[np.ndarray]:
    D, thr = prob.filtration
    return gudhi_reference(D, prob.maxdim, thr, prob.coeff)


def gudhi_reference(D: np.ndarray, maxdim: int, threshold: float, coeff: int = 2) -> list[np.ndarray]:
    """gudhi's diagrams of the validated full matrix ``D`` (float64 arithmetic on its values):
    edges <= threshold, edge collapse (the barcode is unchanged), expansion to ``maxdim + 1``."""
    import gudhi

    n = D.shape[0]
    D64 = np.asarray(D, np.float64)
    rc = gudhi.RipsComplex(distance_matrix=D64, max_edge_length=float(threshold))
    st = rc.create_simplex_tree(max_dimension=1)
    if maxdim >= 1 and n > 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for _ in range(10):
                before = st.num_simplices()
                st.collapse_edges(nb_iterations=1)
                if st.num_simplices() == before:
                    break
        _guarded_expansion(st, n, maxdim + 1)
    # persistence_dim_max: also when the complex has no simplex of dimension maxdim + 1
    st.compute_persistence(homology_coeff_field=coeff, min_persistence=0.0, persistence_dim_max=True)
    return [st.persistence_intervals_in_dimension(k) for k in range(maxdim + 1)]


#: gudhi's simplex tree plus its persistence data, bytes per simplex (measured: sphere3 at
#: dimension 3, 56 M simplices, 13.5 GB peak)
GUDHI_BYTES_PER_SIMPLEX = 250


def _guarded_expansion(st, n: int, top: int) -> None:
    """``st.expansion(top)`` one dimension at a time; MemoryError when the next dimension's
    estimated size (each k-simplex gains about mean-degree / (k + 2) cofacets) would not fit."""
    edges = sum(1 for s, _ in st.get_skeleton(1) if len(s) == 2)
    degree = 2.0 * edges / max(n, 1)
    total, prev_total, count = st.num_simplices(), n, edges  # count: simplices of the top dimension so far
    budget = 0.8 * A.available_memory()
    for k in range(2, top + 1):
        estimate = count * degree / (k + 1)
        if (total + estimate) * GUDHI_BYTES_PER_SIMPLEX > budget:
            raise MemoryError(
                f"rips_persistence (gudhi): expanding to dimension {k} would add ~{estimate:.3g} simplices to "
                f"{total} (~{A.fmt_bytes((total + estimate) * GUDHI_BYTES_PER_SIMPLEX)}), more than the "
                f"{A.fmt_bytes(budget)} budget (80% of available memory); lower maxdim or the threshold")
        st.expansion(k)
        prev_total, total = total, st.num_simplices()
        count = total - prev_total
        if count == 0:
            break


# ------------------------------------------------------------------------------ memory estimate

#: bytes of one engine ``Entry`` (containers.mojo: the diameter, Scalar[T], and the key, Int,
#: aligned to 8): 16 for float32 and float64 alike. Simplex lists, columns and the edge list
#: are Buffers of entries.
ENTRY_BYTES = 16
#: growth slack of a doubling Buffer (capacity between size and 2 size), used by the estimate
#: only (the lower bound takes capacity = size)
GROWTH_SLACK = 1.5
#: columns per simplex (after clearing and the apparent-pair filters), used by the estimate
#: only. Measured: o3_1024 1.8-2 %, o3_4096 1.2-1.3 %, clifford 0.7 % (dimensions 2 and 3)
COLUMN_FRACTION = 0.015
#: the clique count samples vertices until the sum of their (capped) forward degrees squared
#: reaches this, at most ESTIMATE_MAX_SAMPLE vertices; a graph within both is counted exactly
ESTIMATE_WORK = 1 << 21
ESTIMATE_MAX_SAMPLE = 512
#: a vertex with more forward neighbours has its neighbourhood subsampled to this many
ESTIMATE_MAX_LOCAL = 256
#: recursive clique-count calls (dimensions >= 4) before those dimensions are extrapolated
ESTIMATE_MAX_CALLS = 20000
#: the engine's memory budget: this fraction of available memory, at least ENGINE_MIN_BUDGET
BUDGET_FRACTION = 0.8
ENGINE_MIN_BUDGET = 64 << 20


def _engine_budget() -> int:
    """The byte budget the engine runs under (and the refusal compares against)."""
    return max(ENGINE_MIN_BUDGET, int(A.available_memory() * BUDGET_FRACTION))


def _binom_rows(d: np.ndarray, kmax: int) -> np.ndarray:
    """(kmax + 1, len(d)) float64: C(d, k) for k = 0..kmax (0 where d < k; inf past float range)."""
    d = np.asarray(d, np.float64)
    out = np.zeros((kmax + 1, d.size))
    c = np.ones(d.size)
    out[0] = c
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(1, kmax + 1):
            c = c * np.maximum(d - (k - 1), 0) / k
            out[k] = c
    return out


def _clique_counts(U: np.ndarray, kmax: int, calls: list) -> np.ndarray | None:
    """c[j] = the j-cliques (j = 0..kmax) of the graph whose strictly upper-triangular boolean
    adjacency is U; None once ``calls[0]`` (the recursion budget) runs out."""
    m = U.shape[0]
    c = np.zeros(kmax + 1)
    c[0] = 1
    if kmax >= 1:
        c[1] = m
    if kmax >= 2:
        c[2] = np.count_nonzero(U)
    if kmax >= 3 and c[2]:
        F = U.astype(np.float32)
        c[3] = float(((F @ F) * F).sum())  # paths i < l < j closed by i < j: each triangle once
    if kmax >= 4 and c[3]:
        for i in range(m):
            s = np.flatnonzero(U[i])
            if s.size < 3:
                continue
            calls[0] -= 1
            if calls[0] < 0:
                return None
            sub = _clique_counts(U[np.ix_(s, s)], kmax - 1, calls)
            if sub is None:
                return None
            c[4:] += sub[3:kmax]  # the j-cliques with lowest vertex i: (j - 1)-cliques among its upper neighbours
    return c


def _csr_forward(n: int, indptr: np.ndarray, indices: np.ndarray):
    """Forward degrees (neighbours above each vertex) of a CSR graph and its upper-adjacency
    function: ``adjacent(nb)`` the strictly upper-triangular boolean adjacency among the
    ascending vertices nb."""
    deg = np.diff(indptr)
    rows = np.repeat(np.arange(n, dtype=np.int64), deg)
    dplus = np.bincount(rows[indices > rows], minlength=n) if indices.size else np.zeros(n, np.int64)
    del rows

    def forward(v: int) -> np.ndarray:
        row = indices[indptr[v]:indptr[v + 1]]
        return row[np.searchsorted(row, v, side="right"):].astype(np.int64)

    def adjacent(nb: np.ndarray) -> np.ndarray:
        m = nb.size
        lens = deg[nb]
        starts = indptr[nb]
        total = int(lens.sum())
        owner = np.repeat(np.arange(m), lens)
        flat = indices[np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + np.arange(total)]
        pos = np.searchsorted(nb, flat)
        hit = pos < m
        hit[hit] = nb[pos[hit]] == flat[hit]
        hit &= pos > owner
        U = np.zeros((m, m), bool)
        U[owner[hit], pos[hit]] = True
        return U

    return dplus, forward, adjacent


def _dense_forward(D: np.ndarray, thr: float):
    """_csr_forward for the dense matrix: edges are the entries <= thr off the diagonal."""
    n = D.shape[0]
    dplus = np.zeros(n, np.int64)
    rows = max(1, (16 << 20) // max(1, n))
    for a in range(0, n, rows):
        b = min(n, a + rows)
        mask = D[a:b] <= thr
        mask &= np.arange(n)[None, :] > np.arange(a, b)[:, None]
        dplus[a:b] = np.count_nonzero(mask, axis=1)

    def forward(v: int) -> np.ndarray:
        return v + 1 + np.flatnonzero(D[v, v + 1:] <= thr)

    def adjacent(nb: np.ndarray) -> np.ndarray:
        return np.triu(D[np.ix_(nb, nb)] <= thr, 1)

    return dplus, forward, adjacent


def simplex_counts(n: int, maxdim: int, dplus: np.ndarray, forward, adjacent, seed: int = 0) -> dict:
    """Per dimension k = 0..maxdim the k-simplices of the clique complex: ``estimate`` (float),
    ``lower`` (a sure lower bound), ``upper`` (a sure upper bound) and ``exact`` (whether the
    estimate is the exact count).

    Dimensions 0 and 1 are exact (vertices, edges). For k >= 2 each k-simplex is counted once,
    at its lowest vertex v, as a k-clique among v's forward neighbours N+(v) (those above v):
    ``upper`` = sum over v of C(|N+(v)|, k) (every k-subset of N+(v) a clique). The cliques are
    counted exactly for a random sample of vertices (all of them when the graph is small:
    ``ESTIMATE_WORK``, ``ESTIMATE_MAX_SAMPLE``), on a random subset of ``ESTIMATE_MAX_LOCAL``
    neighbours where N+(v) is larger; ``lower`` is the sum of the cliques actually found
    (each is a simplex), ``estimate`` scales the sample up by the ratio of C(|N+(v)|, k) over
    all vertices to that over the sample (exact when nothing was sampled or subsampled).
    Dimensions past what the recursion budget counts (>= 4, ``ESTIMATE_MAX_CALLS``) are
    extrapolated: N_k ~ N_{k-1} m / (k + 1) with m = k N_{k-1} / N_{k-2}, the mean number of
    common neighbours of a (k-2)-simplex held constant (it falls with k in a geometric graph,
    so this tends to overestimate); their lower bound is 0."""
    maxdim = max(0, int(maxdim))
    E = int(dplus.sum())
    upper = np.zeros(maxdim + 1)
    upper[0] = n
    if maxdim >= 1:
        upper[1] = E
    lower, est, exact = upper.copy(), upper.copy(), [True] * (maxdim + 1)
    if maxdim >= 2:
        W = _binom_rows(dplus, maxdim)
        upper[2:] = W[2:].sum(axis=1)
        cand = np.flatnonzero(dplus >= 2)
        order = np.random.default_rng(seed).permutation(cand)
        cost = np.cumsum(np.minimum(dplus[order], ESTIMATE_MAX_LOCAL).astype(np.float64) ** 2)
        take = order[:max(min(cand.size, 32), min(int(np.searchsorted(cost, ESTIMATE_WORK, side="right")), ESTIMATE_MAX_SAMPLE))]
        subsampled = False

        def count(kc: int):
            """(found, scaled) over the sample for dimensions <= kc, or None (budget spent)."""
            nonlocal subsampled
            rng, calls = np.random.default_rng(seed + 1), [ESTIMATE_MAX_CALLS]
            found = np.zeros(maxdim + 1)  # the cliques found: a lower bound
            scaled = np.zeros(maxdim + 1)  # each vertex's count scaled to its whole neighbourhood
            for v in take:
                nb = forward(int(v))
                d = nb.size
                if d > ESTIMATE_MAX_LOCAL:
                    nb = np.sort(rng.choice(nb, ESTIMATE_MAX_LOCAL, replace=False))
                    subsampled = True
                c = _clique_counts(adjacent(nb), kc, calls)
                if c is None:
                    return None
                found[:kc + 1] += c
                scaled[:kc + 1] += c * _binom_rows([d], kc)[:, 0] / np.maximum(_binom_rows([nb.size], kc)[:, 0], 1)
            return found, scaled

        kcount = maxdim
        got = count(kcount)
        if got is None:  # the recursion budget ran out: count dimensions <= 3, extrapolate the rest
            kcount = min(maxdim, 3)
            got = count(kcount)
        found, scaled = got
        all_vertices = take.size == cand.size
        for k in range(2, maxdim + 1):
            if k <= kcount:
                ws = W[k][take].sum()
                ratio = upper[k] / ws if ws > 0 else (cand.size / max(1, take.size))
                # the counts are of k-simplices: cliques of k + 1 vertices, v and k of N+(v)
                est[k] = min(upper[k], max(found[k], scaled[k] * (1.0 if all_vertices else ratio)))
                lower[k] = found[k]
                exact[k] = all_vertices and not subsampled
            else:
                prev, prev2 = est[k - 1], est[k - 2]
                est[k] = min(upper[k], prev * prev * k / (prev2 * (k + 1))) if prev2 > 0 else 0.0
                lower[k] = 0.0
                exact[k] = False
    return {"estimate": est.tolist(), "lower": lower.tolist(), "upper": upper.tolist(), "exact": exact}


def _engine_bytes(n: int, maxdim: int, counts: list, columns: list | None, slack: float) -> float:
    """The engine's peak bytes (beyond its input) for k-simplex counts ``counts`` and column
    counts ``columns`` (None: none), following engine.mojo's order: the H0 edge list gathered
    from its chunk buffers (chunks + the gathered copy; the radix sort's scratch is as large),
    then per dimension k >= 1 the reduction (k-simplices unless k = maxdim, columns, pivot map,
    two int64 per column) and the assembly of dimension k + 1 (k-simplices, pivot map, the
    (k+1)-simplices when k + 1 < maxdim and the (k+1)-columns, each in chunk buffers plus the
    gathered copy). ``slack`` is the chunk buffers' capacity over size (1: the lower bound)."""
    E = counts[1]
    cols = columns or [0.0] * (maxdim + 1)
    gathered = lambda m: (slack + 1.0) * ENTRY_BYTES * m  # noqa: E731
    pivot_map = lambda m: 16.0 * 2 ** math.ceil(math.log2(max(64, 4 * m + 2))) if columns else 0.0  # noqa: E731
    peak = max(gathered(E), ENTRY_BYTES * E + 16.0 * n + E)  # then union-find: parent, largest, merged
    for k in range(1, maxdim + 1):
        held = (ENTRY_BYTES * counts[k] if k < maxdim else 0.0) + pivot_map(cols[k])
        peak = max(peak, held + ENTRY_BYTES * cols[k] + 16.0 * cols[k])
        if k < maxdim:
            nxt = gathered(counts[k + 1]) if k + 1 < maxdim else 0.0
            peak = max(peak, held + nxt + gathered(cols[k + 1]) if columns else held + nxt)
    return peak


def estimate_engine_bytes(n: int, maxdim: int, indptr: np.ndarray | None = None, indices: np.ndarray | None = None,
                          itemsize: int = 4, D: np.ndarray | None = None, thr: float = np.inf) -> dict:
    """The mojo engine's memory before it runs, for the sparse engine on the CSR radius graph
    (``indptr``, ``indices``) or the dense engine on the matrix ``D`` (edges: entries <= thr).

    Returns ``simplices`` (``simplex_counts``: per dimension estimate, lower and upper bound),
    ``input_bytes`` (the matrix, or the CSR: indptr, indices and ``itemsize``-byte distances;
    already held when the engine runs), ``estimate_bytes`` (the engine's expected peak on top of
    its input: the estimated simplex counts, ``COLUMN_FRACTION`` of them as columns,
    ``GROWTH_SLACK``; measured within ~15 % of the engine's own peak on o3_4096 and clifford)
    and ``lower_bytes``, a sure lower bound of the engine's own peak accounting: the edge list
    gathered (2 x 16 bytes per edge, exact), and when maxdim >= 3 the k-simplices (k < maxdim)
    held and gathered, counted from the cliques actually found (never from an extrapolation or
    an upper bound); columns count 0 there (how many survive clearing and the apparent pairs is
    known only after the fact)."""
    maxdim = max(0, int(maxdim))
    if D is not None:
        dplus, forward, adjacent = _dense_forward(D, thr)
        input_bytes = D.nbytes
    else:
        dplus, forward, adjacent = _csr_forward(n, indptr, indices)
        input_bytes = indptr.nbytes + indices.nbytes + int(indptr[-1]) * itemsize
    counts = simplex_counts(n, max(maxdim, 1), dplus, forward, adjacent)
    est, low = counts["estimate"], counts["lower"]
    columns = [0.0, float(est[1])] + [COLUMN_FRACTION * c for c in est[2:]]
    if maxdim >= 1:
        columns[1] = max(0.0, est[1] - (n - 1)) * COLUMN_FRACTION  # edges that merge nothing, few of them columns
    return {"simplices": counts, "input_bytes": int(input_bytes),
            "estimate_bytes": int(_engine_bytes(n, maxdim, est, columns, GROWTH_SLACK)),
            "lower_bytes": int(_engine_bytes(n, maxdim, low, None, 1.0))}


# ------------------------------------------------------------------------------ mojo engine

_last_stats: dict | None = None


#: the engine's scratch buffers hold simplices of up to MAX_ENGINE_DIM + 3 vertices
MAX_ENGINE_DIM = 60


def _engine_dims(n: int, maxdim: int) -> int:
    """Dimensions the engine computes: H_k needs k + 2 vertices to be nonzero."""
    return min(maxdim, max(0, n - 2))


def _engine_limits(prob: PersistenceProblem) -> None:
    """UnsupportedProblem when simplex indices (combinatorial number system, with the coefficient
    packed below them for p > 2) would overflow the engine's 64-bit keys."""
    n, dims, maxdim, coeff = prob.n, prob.maxdim, prob.reported_maxdim, prob.coeff  # dims: capped at n - 2
    if dims > MAX_ENGINE_DIM:
        raise UnsupportedProblem(f"maxdim: the mojo engine computes up to dimension {MAX_ENGINE_DIM}, got maxdim={maxdim} with n={n}")
    cbits = 0 if coeff == 2 else coeff.bit_length()
    top = max(math.comb(n, k) for k in range(min(dims + 2, n) + 1))
    if top.bit_length() > 62 - cbits:
        raise UnsupportedProblem(
            f"maxdim: n={n} points with maxdim={maxdim} give simplex indices up to ~2^{top.bit_length()}, beyond the "
            f"mojo engine's {62 - cbits}-bit index range; lower maxdim or n")


#: which engine the mojo backend runs (internal, for tests and measurements; public choice
#: comes with the cost model): "dense" the full (n, n) matrix, "sparse" the radius graph in
#: CSR form, "auto" the sparse engine for sparse input well below complete
#: (``SPARSE_MAX_DENSITY``), else dense
_ENGINE = "auto"
ENGINES = ("auto", "dense", "sparse")
#: "auto" runs sparse input on the sparse engine when it holds at most this fraction of the
#: n (n - 1) / 2 pairs (a near-complete graph runs faster on the dense matrix's SIMD rows)
SPARSE_MAX_DENSITY = 0.25
#: "auto" runs a point cloud with a finite threshold on the sparse engine from this many points
#: on (its radius graph from ``neighbors.radius_graph``, no (n, n) matrix), unless the graph
#: holds more than ``SPARSE_MAX_DENSITY`` of all pairs. Measured on this 2-core VM (loaded):
#: o3_1024 at threshold 1.8 (6 % of pairs) runs as fast on either engine, o3_4096 at 1.4
#: (2.8 %) 2x faster sparse (31 s against 64 s), and clifford 50k at 0.15 only fits sparse.
SPARSE_MIN_N = 1024


@op.impl("mojo", check=_engine_limits)
def _mojo_impl(prob: PersistenceProblem, engine: str | None = None) -> list[np.ndarray]:
    """The engine on the full matrix or on the radius graph (``engine``: one of ``ENGINES``,
    default the module's ``_ENGINE``); what ran is in ``last_stats()["engine"]``."""
    requested = _ENGINE if engine is None else engine
    engine, why = _choose_engine(prob, requested)
    if engine == "sparse":
        indptr, indices, dists, thr = _sparse_graph(prob)
        density = _density(prob.n, indptr)
        if requested != "auto" or isinstance(prob.X, G.SparseEdges) or density <= SPARSE_MAX_DENSITY:
            return _run_sparse(prob, indptr, indices, dists, thr, why)
        del indptr, indices, dists
        engine, why = "dense", f"the radius graph holds {density:.3g} of all pairs (> {SPARSE_MAX_DENSITY})"
    D, thr = prob.filtration
    D = np.ascontiguousarray(D)
    D = D if D.dtype == np.float32 else np.ascontiguousarray(D, np.float64)
    estimate = _check_engine_memory(prob, "dense", thr, D=D)
    return _run_engine(prob, D, thr, None, None, ("dense", why), estimate=estimate)


def _choose_engine(prob: PersistenceProblem, engine: str) -> tuple[str, str]:
    """(engine, reason) for ``engine`` in ``ENGINES``."""
    if not isinstance(engine, str) or engine not in ENGINES:
        raise ValueError(f"engine: one of {', '.join(ENGINES)}, got {engine!r}")
    if engine != "auto":
        return engine, "requested"
    if isinstance(prob.X, G.SparseEdges):
        n = prob.n
        density = prob.X.d.size / max(1, n * (n - 1) // 2)
        if density <= SPARSE_MAX_DENSITY:
            return "sparse", f"sparse input with {density:.3g} of all pairs as edges (<= {SPARSE_MAX_DENSITY})"
        return "dense", f"sparse input with {density:.3g} of all pairs as edges (> {SPARSE_MAX_DENSITY})"
    if not prob.is_matrix and np.isfinite(prob.threshold) and prob.n >= SPARSE_MIN_N:
        return "sparse", f"a point cloud of n={prob.n} >= {SPARSE_MIN_N} points with a finite threshold"
    if prob.is_matrix:
        return "dense", "a dense distance matrix"
    return "dense", (f"a point cloud of n={prob.n} < {SPARSE_MIN_N} points" if np.isfinite(prob.threshold)
                     else "a point cloud without a threshold (the enclosing radius: near-complete)")


def _density(n: int, indptr: np.ndarray) -> float:
    """The fraction of the n (n - 1) / 2 pairs that the CSR graph (both directions) holds."""
    return float(indptr[-1]) / max(1, n * (n - 1))


def _mojo_sparse(prob: PersistenceProblem, indptr: np.ndarray, indices: np.ndarray, dists: np.ndarray,
                 threshold: float, why: str = "requested") -> list[np.ndarray]:
    """The sparse engine on the radius graph of ``prob`` in CSR form: ``indptr`` (n + 1,) int64,
    ``indices`` int32 ascending per row, both directions, no self loops, ``dists`` float32 or
    float64 (the filtration's dtype), each <= ``threshold`` (the threshold actually used)."""
    indptr, indices, dists = _check_csr(prob.n, indptr, indices, dists, threshold)
    return _run_sparse(prob, indptr, indices, dists, threshold, why)


def _run_sparse(prob: PersistenceProblem, indptr: np.ndarray, indices: np.ndarray, dists: np.ndarray,
                threshold: float, why: str) -> list[np.ndarray]:
    """The sparse engine on a CSR graph that is valid by construction (``_sparse_graph``'s:
    ``radius_graph``, ``csr_from_pairs`` or the validated dense matrix); a graph from anywhere
    else goes through ``_mojo_sparse``, whose full check (an argsort of every entry: 1 s on
    clifford's 4.5 M entries, 7x the neighbour search) would only repeat what they guarantee."""
    estimate = _check_engine_memory(prob, "sparse", float(threshold), indptr=indptr, indices=indices, itemsize=dists.itemsize)
    return _run_engine(prob, dists, float(threshold), indptr, indices, ("sparse", why), estimate=estimate)


def _check_engine_memory(prob: PersistenceProblem, engine: str, thr: float, **graph) -> dict:
    """``estimate_engine_bytes`` of the run about to start; ``MemoryError`` (before the engine
    allocates anything) when its ``lower_bytes`` exceed the engine's budget.

    The refusal rule: only the sure lower bound refuses. It counts what the engine must hold
    whatever the reduction does (the edge list; with maxdim >= 3 the simplices of dimensions
    2..maxdim-1 that the assembly lists, from cliques actually found), and the engine takes
    these bytes through the same budget, so a refused problem would have stopped with status 1
    anyway, only later. The estimate (columns, extrapolated and sampled counts) may be above
    or below the peak, so it never refuses on its own; a problem between the lower bound and
    the budget runs, and the engine's own budget still stops it without an OOM kill."""
    est = estimate_engine_bytes(prob.n, prob.maxdim, thr=thr, **graph)
    budget = _engine_budget()
    est["budget_bytes"] = budget
    if est["lower_bytes"] > budget:
        low = est["simplices"]["lower"]
        # the first stage past the budget: building the simplex list of dimension m - 1 (0: the edges)
        m = next(m for m in range(prob.maxdim + 1) if _engine_bytes(prob.n, m, low, None, 1.0) > budget)
        shown = ", ".join(f"{c:.3g}" for c in low[:prob.maxdim + 1])
        raise MemoryError(
            f"rips_persistence: the Rips complex of n={prob.n} points up to dimension {prob.reported_maxdim} at threshold "
            f"{thr:g} needs at least {A.fmt_bytes(est['lower_bytes'])} in the {engine} engine (estimate "
            f"{A.fmt_bytes(est['estimate_bytes'])}; at least {shown} simplices per dimension), more than its "
            f"{A.fmt_bytes(budget)} memory budget ({BUDGET_FRACTION:.0%} of available memory): building dimension "
            f"{max(0, m - 1)} asked for at least {A.fmt_bytes(_engine_bytes(prob.n, m, low, None, 1.0))}, refused before "
            f"the engine ran; lower maxdim or the threshold")
    return est


def _check_csr(n: int, indptr, indices, dists, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CSR radius graph checked (before any pointer reaches the engine): ValueError /
    TypeError naming the argument."""
    for name, a in (("indptr", indptr), ("indices", indices), ("dists", dists)):
        if not isinstance(a, np.ndarray) or a.ndim != 1:
            raise TypeError(f"{name}: expected a 1-D numpy array, got {type(a).__name__}"
                            + (f" of shape {a.shape}" if isinstance(a, np.ndarray) else ""))
    if indptr.dtype != np.int64 or indices.dtype != np.int32:
        raise TypeError(f"indptr, indices: expected int64 and int32, got {indptr.dtype} and {indices.dtype}")
    if dists.dtype not in (np.float32, np.float64):
        raise TypeError(f"dists: expected float32 or float64, got {dists.dtype}")
    if indptr.size != n + 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
        raise ValueError(f"indptr: expected {n + 1} nondecreasing offsets from 0, got {indptr.size}")
    nnz = int(indptr[-1])
    if indices.size != nnz or dists.size != nnz:
        raise ValueError(f"indices, dists: expected indptr[-1] = {nnz} entries, got {indices.size} and {dists.size}")
    if nnz and (indices.min() < 0 or indices.max() >= n):
        raise ValueError(f"indices: vertices must lie in [0, {n})")
    if nnz and not (np.all(np.isfinite(dists)) and dists.min() >= 0 and dists.max() <= threshold):
        raise ValueError(f"dists: expected finite distances in [0, threshold={threshold:g}]")
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    key = rows * n + indices
    if np.any(rows == indices):
        raise ValueError("indices: the graph has a self loop")
    if np.any(np.diff(key) <= 0):
        raise ValueError("indices: neighbours must be strictly ascending within each row")
    transposed = indices.astype(np.int64) * n + rows  # the key of entry (j, i) for (i, j)
    order = np.argsort(transposed, kind="stable")
    if not np.array_equal(transposed[order], key) or not np.array_equal(dists[order], dists):
        raise ValueError("indices, dists: the graph must be symmetric (j in row i iff i in row j, same distance)")
    return indptr, indices, dists


def _sparse_graph(prob: PersistenceProblem) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The radius graph of ``prob`` in CSR form and the threshold actually used: from sparse
    input directly; for a point cloud with a finite threshold from ``neighbors.radius_graph``
    (no (n, n) matrix; distances bit for bit those of the dense matrix, an edge iff <= the
    threshold rounded down to the filtration's dtype, as the dense engine); else from the
    validated dense matrix."""
    X, n = prob.X, prob.n
    if isinstance(X, G.SparseEdges):
        thr = _edges_threshold(X, prob.threshold)
        keep = X.d <= thr
        return (*csr_from_pairs(n, X.i[keep], X.j[keep], X.d[keep]), thr)
    if not prob.is_matrix and np.isfinite(prob.threshold) and n > 0:
        thr = A.round_down(prob.threshold, A.result_float_dtype(X))
        return (*radius_graph(X, thr, prob.metric), thr)
    D, thr = prob.filtration
    return (*_csr_from_dense(D, thr), thr)


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


def _csr_from_dense(D: np.ndarray, thr: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of the entries D[i, j] <= thr, i != j, of the validated symmetric matrix, by blocks of rows."""
    n = D.shape[0]
    rows = max(1, (16 << 20) // max(1, n))
    counts, idx, val = np.zeros(n, np.int64), [], []
    for a in range(0, n, rows):
        b = min(n, a + rows)
        mask = D[a:b] <= thr
        mask[np.arange(b - a), np.arange(a, b)] = False
        r, c = np.nonzero(mask)
        counts[a:b] = np.bincount(r, minlength=b - a)
        idx.append(c.astype(np.int32))
        val.append(D[a:b][r, c])
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    cat = (lambda xs, dt: np.concatenate(xs) if xs else np.empty(0, dt))
    return indptr, cat(idx, np.int32), np.ascontiguousarray(cat(val, D.dtype))


def _run_engine(prob: PersistenceProblem, dist: np.ndarray, thr: float, indptr, indices, engine: tuple[str, str],
                estimate: dict | None = None):
    """One engine run: ``dist`` the dense matrix (``indptr`` None) or the CSR distances;
    ``estimate`` (``_check_engine_memory``) goes to ``last_stats()``."""
    global _last_stats
    n, dims, maxdim, coeff = prob.n, prob.maxdim, prob.reported_maxdim, prob.coeff  # dims: capped at n - 2
    kernel = _mojo.load("persistence")
    bits = 32 if dist.dtype == np.float32 else 64
    info = np.zeros(8, np.int64)
    stats = np.zeros((dims + 1) * _NSTATS, np.int64)
    budget = _engine_budget()
    threads = op.threads(prob.size)
    block = ABI.pack(dtype_bits=bits, dist=dist, n=n, maxdim=dims, threshold=float(thr), modulus=coeff,
                     reps=prob.reps, threads=threads, budget=budget, info=info, stats=stats,
                     sparse=indptr is not None, indptr=indptr, indices=indices)
    _control.native(lambda: kernel.rips(block.address))
    status, addr, nbars = int(info[0]), int(info[1]), int(info[2])
    reps_addr, nwords = int(info[6]), int(info[7])
    words = np.empty(0, np.int64)
    try:
        if status == 1:
            raise MemoryError(
                f"rips_persistence: the Rips complex of n={n} points up to dimension {maxdim} at threshold {thr:g} "
                f"needs more than the {A.fmt_bytes(budget)} memory budget (80% of available memory): building "
                f"dimension {int(info[3])} asked for {A.fmt_bytes(int(info[4]))}; lower maxdim or the threshold")
        if status == 2:
            raise Cancelled("rips_persistence: cancelled")
        if status == 3:
            raise RuntimeError("rips_persistence: the mojo engine's homology reduction met a low without a "
                               "cohomology partner (an engine bug); please report it with the input")
        if status != 0:
            raise RuntimeError(f"rips_persistence: mojo engine failed with status {status}")
        bars = np.empty((0, 3))
        if nbars:
            raw = (ctypes.c_double * (3 * nbars)).from_address(addr)
            bars = np.frombuffer(raw, np.float64).reshape(nbars, 3).copy()
        if nwords:
            words = np.frombuffer((ctypes.c_int64 * nwords).from_address(reps_addr), np.int64).copy()
    finally:
        if addr:
            kernel.free_bars(addr)
        if reps_addr:
            kernel.free_bars(reps_addr)
    st = stats.reshape(dims + 1, _NSTATS)
    _last_stats = {f: [int(v) if not f.endswith("_s") else float(v) * 1e-9 for v in st[:, i]] for i, f in enumerate(STAT_FIELDS)}
    _last_stats["seconds"] = [a + b + c for a, b, c in zip(_last_stats["assemble_s"], _last_stats["search_s"], _last_stats["reduce_s"])]
    _last_stats["peak_bytes"] = int(info[5])
    _last_stats["engine"], _last_stats["engine_reason"] = engine
    if estimate is not None:  # the memory estimate made before the run, next to the engine's peak_bytes
        _last_stats["estimate_bytes"] = estimate["estimate_bytes"]
        _last_stats["estimate_lower_bytes"] = estimate["lower_bytes"]
        _last_stats["estimate_simplices"] = estimate["simplices"]["estimate"][:dims + 1]
    deaths = np.where(bars[:, 2] < 0, np.inf, bars[:, 2])
    dim = bars[:, 0].astype(np.int64)
    dgms = [np.stack([bars[dim == k, 1], deaths[dim == k]], axis=1) for k in range(dims + 1)]
    if not prob.reps:
        return dgms
    cycles, cocycles = _parse_reps(words, dim, prob.reps)
    return Bars(dgms, cycles, cocycles)
