"""The ``mojo`` backend: the binding of ``kernels/persistence.mojo`` (the parameter block, the
engine's limits, the choice between the dense and the sparse engine, one run and its
statistics)."""

from __future__ import annotations

import ctypes
import math

import numpy as np

from .. import _arrays as A
from .. import _control, _mojo
from .._abi import ADDR, BOOL, FLOAT, INT, KernelABI
from ..errors import Cancelled, UnsupportedProblem
from ..neighbors import csr_from_pairs
from . import inputs as G
from .estimate import BUDGET_FRACTION, _check_engine_memory, _engine_budget
from . import collapse as C
from .graph import _check_csr, _dense_from_csr, _density, _sparse_graph, _without_isolated
from .problem import INFO, KIND, STAT, STATUS, WANT, Info, PersistenceProblem, Status, _engine_dims, op
from .result import Bars, _parse_reps


#: per-dimension statistics the mojo engine reports (``last_stats()``)
STAT_FIELDS = tuple(f.removesuffix("_ns") + "_s" if f.endswith("_ns") else f for f in STAT.members)
#: the engine's parameter block (kernels/aura_kernels/persistence/abi.mojo is generated from it);
#: outputs: info (INFO.words,) int64 and stats ((maxdim + 1) * STAT.words,) int64
#: dense: ``dist`` the (n, n) matrix, ``indptr``/``indices`` 0; ``sparse``: ``dist`` the CSR
#: distances of the radius graph, ``indptr`` (n + 1,) int64, ``indices`` int32 (``_check_csr``);
#: ``births`` (n,) float64 vertex birth times (H0 by ripser.py's rule) or 0 (all 0)
ABI = KernelABI("persistence", [("dtype_bits", INT), ("dist", ADDR), ("n", INT), ("maxdim", INT), ("threshold", FLOAT),
                                ("modulus", INT), ("reps", INT), ("threads", INT), ("budget", INT), ("info", ADDR), ("stats", ADDR),
                                ("sparse", BOOL), ("indptr", ADDR), ("indices", ADDR),
                                ("births", ADDR)], enums=(WANT,), outputs=(STATUS, INFO, STAT, KIND))


_last_stats: dict | None = None


def last_stats() -> dict | None:
    """Per-dimension counters of the last mojo run in this process: simplices enumerated,
    columns reduced, apparent pairs skipped, columns cleared, emergent pairs, columns reduced
    with a heap, column additions, cofacets pushed into the heap; seconds spent assembling
    columns (edges, sort and union-find for dimension 0), searching emergent pairs, reducing,
    and their sum (per dimension); ``peak_bytes``: the most the engine reserved at once (the
    capacity it counts against its memory budget: resident memory can be lower, a buffer of
    1 MiB or more being a mapping whose pages are resident only once written);
    ``estimate_bytes`` and ``estimate_lower_bytes``: the estimate of that peak and its sure
    lower bound made before the run, ``estimate_simplices`` the simplex counts estimated per
    dimension, ``estimate_counted`` whether cliques were counted for them (False: the sure
    lower bound could not reach the budget even at the counts' upper bounds, so the estimate
    is taken at those upper bounds; ``estimate_engine_bytes``)."""
    return _last_stats


#: the engine's scratch buffers hold simplices of up to MAX_ENGINE_DIM + 3 vertices
MAX_ENGINE_DIM = 60


def _engine_limits(prob: PersistenceProblem) -> None:
    """UnsupportedProblem when simplex indices (combinatorial number system, with the coefficient
    packed below them for p > 2) would overflow the engine's 64-bit keys. A problem bound for
    the sparse engine is checked when it runs, over the vertices that have an edge
    (``_run_sparse``), which may be far fewer than n."""
    if _choose_engine(prob, _ENGINE)[0] != "sparse":
        _check_index_range(prob.n, prob.maxdim, prob.reported_maxdim, prob.coeff)


def _check_index_range(n: int, dims: int, maxdim: int, coeff: int) -> None:
    """``_engine_limits`` for an engine run over n vertices up to dimension ``dims`` (<= n - 2)."""
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
#: CSR form, "auto" the measured rule below
_ENGINE = "auto"
ENGINES = ("auto", "dense", "sparse")
# The "auto" rule (``_choose_engine``, ``_sparse_by_density``): a point cloud with a finite
# threshold of at least SPARSE_MIN_N points, and sparse input of any size, run on the sparse
# engine while the radius graph holds at most SPARSE_MAX_DENSITY_H1 (maxdim <= 1) or
# SPARSE_MAX_DENSITY (maxdim >= 2) of the n (n - 1) / 2 pairs; else dense. Measured with
# `python tools/bench_engine_choice.py --cap 15` (n 128..4096) and a second run with
# `--n 512,1024,2048,4096 --cap 12` (cells "run 1/run 2"): uniform float32 clouds in the unit
# cube, the threshold keeping the given fraction of the pairs, collapse off, both engines in
# one process, medians of 3 below 1 s; the 2-core VM at load ~6, so one cell swings by up to
# 2x. Dense / sparse wall time (> 1: sparse faster):
#   maxdim 1, dense/sparse at density      0.02       0.05        0.1       0.25        0.4        0.6
#   n=128                               0.19       0.29       0.29       0.24       0.75       0.71
#   n=256                               0.46       0.24       0.86       0.49        0.9       0.65
#   n=512                          0.94/0.85  0.91/0.89  1.14/0.69   1.2/0.59  0.91/1.11  0.86/0.82
#   n=1024                         1.73/1.57  0.56/0.88  1.71/1.13  0.64/1.21   1.05/0.7   1.83/0.7
#   n=2048                         1.71/1.43  2.12/1.17  1.21/1.64  1.28/1.07  1.57/0.98   1.9/0.89
#   n=4096                         1.66/1.75  1.96/1.18  1.11/1.73  0.79/1.06  1.04/1.18  1.03/0.84
#   maxdim 2, dense/sparse at density      0.02       0.05        0.1       0.25        0.4        0.6
#   n=128                               0.93        0.9       0.89       1.82       0.52       0.43
#   n=256                               0.91       0.87       1.49       0.58       0.37       0.35
#   n=512                          0.94/0.96   0.91/0.6   0.53/1.3  0.32/0.44  0.32/0.36  0.52/0.31
#   n=1024                         1.39/0.61  0.83/1.34  0.52/0.47  0.72/0.72  0.36/0.43  0.45/0.38
#   n=2048                         1.89/2.77  1.92/1.11   1.3/1.03  0.76/0.55          -          -
#   n=4096                          1.69/2.7  1.25/1.86       0.93          -          -          -
#   Below 1024 points dense wins (maxdim 1: 0.2-0.9x at n <= 256; n 512 0.6-1.2x). maxdim 1,
#   n >= 1024: sparse as fast or faster up to 0.25, about even at 0.4-0.6 -> 0.4. maxdim 2:
#   sparse wins below 0.1 from n 2048 on (1.1-2.8x), dense from 0.25 on (0.3-0.8x), n 4096
#   at 0.1 0.93x; the crossover interpolates to ~0.14 at n 2048 -> 0.16, just above the 0.152
#   of the sparse input that tests/unit/test_persistence_sparse.py requires on the sparse engine.
SPARSE_MIN_N = 1024
#: the largest fraction of all pairs that runs sparse for maxdim >= 2 (see the table above)
SPARSE_MAX_DENSITY = 0.16
#: the same for maxdim <= 1 (the sparse H1 path drops apparent edges during the edge scan)
SPARSE_MAX_DENSITY_H1 = 0.4


@op.impl("mojo", check=_engine_limits)
def _mojo_impl(prob: PersistenceProblem, engine: str | None = None) -> list[np.ndarray]:
    """The engine on the full matrix or on the radius graph (``engine``: one of ``ENGINES``,
    default the module's ``_ENGINE``); what ran is in ``last_stats()["engine"]``."""
    requested = _ENGINE if engine is None else engine
    engine, why = _choose_engine(prob, requested)
    if prob.collapse:  # (the index range was checked as for the uncollapsed problem: _engine_limits)
        if engine != "sparse":
            why = f"the edge-collapsed radius graph (uncollapsed: dense engine, {why})"
        return _run_collapsed(prob, requested, engine, why)
    if engine == "sparse":
        indptr, indices, dists, thr = _sparse_graph(prob)
        densify = requested == "auto" and not isinstance(prob.X, G.SparseEdges)
        return _run_sparse(prob, indptr, indices, dists, thr, why, densify=densify)
    return _run_dense(prob, why)


def _run_collapsed(prob: PersistenceProblem, requested: str, engine: str, why: str) -> list[np.ndarray]:
    """The engine on the edge-collapsed radius graph (``collapse.collapse_edges``): the
    sparse engine (under "auto", a collapsed graph still holding more than
    ``_sparse_by_density``'s limit among its vertices runs dense, as any sparse input;
    "dense" requested: the dense engine on its matrix). ``last_stats()["collapse"]`` holds the
    collapse's passes, edge counts and seconds."""
    global _last_stats
    indptr, indices, dists, thr = _sparse_graph(prob)
    i, j, d = C.upper_pairs(indptr, indices, dists)
    del indptr, indices, dists  # freed before the kernel runs; it writes its output over i, j, d
    k, cstats = C.collapse_in_place(prob.n, i, j, d)
    cstats["why"] = prob.collapse_why
    indptr, indices, dists = csr_from_pairs(prob.n, i[:k], j[:k], d[:k])
    del i, j, d
    done = C.describe(cstats)
    why = f"{why}; {done}"
    if engine == "dense" and requested == "dense":
        dgms = _run_dense_graph(prob, indptr, indices, dists, thr, why)
    else:
        dgms = _run_sparse(prob, indptr, indices, dists, thr, why, densify=requested == "auto", collapsed=True)
    if _last_stats is not None:
        _last_stats["collapse"] = cstats
    return dgms


def _run_dense(prob: PersistenceProblem, why: str) -> list[np.ndarray]:
    """The dense engine on the validated full matrix."""
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
        sparse, why = _sparse_by_density(prob.X.d.size / max(1, n * (n - 1) // 2), prob.maxdim)
        return ("sparse" if sparse else "dense"), f"sparse input with {why}"
    if not prob.is_matrix and np.isfinite(prob.threshold) and prob.n >= SPARSE_MIN_N:
        return "sparse", f"a point cloud of n={prob.n} >= {SPARSE_MIN_N} points with a finite threshold"
    if prob.is_matrix:
        return "dense", "a dense distance matrix"
    return "dense", (f"a point cloud of n={prob.n} < {SPARSE_MIN_N} points" if np.isfinite(prob.threshold)
                     else "a point cloud without a threshold (the enclosing radius: near-complete)")


def _sparse_by_density(density: float, maxdim: int) -> tuple[bool, str]:
    """Whether "auto" keeps a graph holding ``density`` of all pairs on the sparse engine at
    ``maxdim`` (``SPARSE_MAX_DENSITY``, ``SPARSE_MAX_DENSITY_H1``), and the reason."""
    limit = SPARSE_MAX_DENSITY_H1 if maxdim <= 1 else SPARSE_MAX_DENSITY
    sparse = density <= limit
    return sparse, f"{density:.3g} of all pairs as edges ({'<=' if sparse else '>'} {limit} at maxdim {maxdim})"


def _mojo_sparse(prob: PersistenceProblem, indptr: np.ndarray, indices: np.ndarray, dists: np.ndarray,
                 threshold: float, why: str = "requested") -> list[np.ndarray]:
    """The sparse engine on the radius graph of ``prob`` in CSR form: ``indptr`` (n + 1,) int64,
    ``indices`` int32 ascending per row, both directions, no self loops, ``dists`` float32 or
    float64 (the filtration's dtype), each <= ``threshold`` (the threshold actually used)."""
    indptr, indices, dists = _check_csr(prob.n, indptr, indices, dists, threshold)
    return _run_sparse(prob, indptr, indices, dists, threshold, why)


def _run_sparse(prob: PersistenceProblem, indptr: np.ndarray, indices: np.ndarray, dists: np.ndarray,
                threshold: float, why: str, densify: bool = False, collapsed: bool = False) -> list[np.ndarray]:
    """The sparse engine on a CSR graph that is valid by construction (``_sparse_graph``'s:
    ``radius_graph``, ``csr_from_pairs`` or the validated dense matrix); a graph from anywhere
    else goes through ``_mojo_sparse``, whose full check (an argsort of every entry: 1 s on
    clifford's 4.5 M entries, 7x the neighbour search) would only repeat what they guarantee.

    Vertices without an edge (each an infinite H0 bar) stay out of the engine, which runs on
    the others renumbered (``_without_isolated``); with representatives asked for, every
    vertex goes in. With ``densify`` (auto) a graph too dense for the sparse engine among those
    vertices (``_sparse_by_density``) runs on the dense engine instead: the full matrix, or
    the (k, k) one of the k vertices with an edge (``collapsed``: always the graph's own
    matrix, not the input's)."""
    kept, indptr, indices = (None, indptr, indices) if prob.reps else _without_isolated(indptr, indices)
    n, thr = prob.n if kept is None else kept.size, float(threshold)
    # the births of the renumbered vertices (passed only then: else _run_engine's default)
    births = {} if prob.births is None or kept is None else {"births": prob.births[kept]}
    isolated = _isolated_bars(prob, kept)
    if kept is not None and n == 0:  # no edge at all
        return [isolated, *(np.empty((0, 2)) for _ in range(prob.maxdim))]
    sparse, holds = _sparse_by_density(_density(n, indptr), prob.maxdim)
    if densify and not sparse:
        among = "" if kept is None else f" among the {n} vertices with an edge"
        why = f"{why}; the radius graph{among} holds {holds}: dense"
        if kept is None and not collapsed:  # (a collapsed graph is not the input's: its own matrix below)
            del indptr, indices, dists
            return _run_dense(prob, why)
        dgms = _run_dense_graph(prob, indptr, indices, dists, thr, why, **births)
    else:
        estimate = _check_engine_memory(prob, "sparse", thr, n=n, indptr=indptr, indices=indices, itemsize=dists.itemsize)
        dgms = _run_engine(prob, dists, thr, indptr, indices, ("sparse", why), estimate=estimate, n=n, **births)
    if kept is not None:
        dgms[0] = np.concatenate([dgms[0], isolated])
    return dgms


def _run_dense_graph(prob: PersistenceProblem, indptr: np.ndarray, indices: np.ndarray, dists: np.ndarray, thr: float,
                     why: str, **births) -> list[np.ndarray]:
    """The dense engine on the (k, k) matrix of a CSR graph over k = indptr.size - 1 vertices
    (``births``: as ``_run_engine``'s, when they are not ``prob``'s)."""
    n = indptr.size - 1
    D = _dense_from_csr(n, indptr, indices, dists)
    estimate = _check_engine_memory(prob, "dense", thr, n=n, D=D)
    return _run_engine(prob, D, thr, None, None, ("dense", why), estimate=estimate, n=n, **births)


def _isolated_bars(prob: PersistenceProblem, kept: np.ndarray | None) -> np.ndarray:
    """The infinite H0 bars ``[birth, inf)`` of the vertices left out of the engine (those
    not in ``kept``; none when ``kept`` is None)."""
    if kept is None:
        return np.empty((0, 2))
    out = np.ones(prob.n, bool)
    out[kept] = False
    births = np.zeros(prob.n) if prob.births is None else prob.births
    return np.stack([births[out], np.full(int(out.sum()), np.inf)], axis=1)


def _run_engine(prob: PersistenceProblem, dist: np.ndarray, thr: float, indptr, indices, engine: tuple[str, str],
                estimate: dict | None = None, n: int | None = None, births: np.ndarray | None = None):
    """One engine run over ``n`` vertices (default ``prob.n``): ``dist`` the dense matrix
    (``indptr`` None) or the CSR distances; ``births`` the (n,) vertex birth times (default
    ``prob.births``; the engine's H0 applies them); ``estimate`` (``_check_engine_memory``)
    goes to ``last_stats()``."""
    global _last_stats
    n = prob.n if n is None else n
    births = prob.births if births is None else births
    if births is not None:
        births = np.ascontiguousarray(births, np.float64)
        if births.shape != (n,):  # checked here too: the kernel reads n values at this address
            raise ValueError(f"births: expected shape ({n},), got {births.shape}")
    dims, maxdim, coeff = _engine_dims(n, prob.maxdim), prob.reported_maxdim, prob.coeff  # dims: capped at n - 2
    _check_index_range(n, dims, maxdim, coeff)
    kernel = _mojo.load("persistence")
    bits = 32 if dist.dtype == np.float32 else 64
    info = np.zeros(INFO.words, np.int64)
    stats = np.zeros((dims + 1) * STAT.words, np.int64)
    budget = _engine_budget()
    threads = op.threads({"n": n, "maxdim": dims})
    block = ABI.pack(dtype_bits=bits, dist=dist, n=n, maxdim=dims, threshold=float(thr), modulus=coeff,
                     reps=prob.reps, threads=threads, budget=budget, info=info, stats=stats,
                     sparse=indptr is not None, indptr=indptr, indices=indices, births=births)
    _control.native(lambda: kernel.rips(block.address))
    status, addr, nbars = int(info[Info.STATUS]), int(info[Info.BARS]), int(info[Info.NBARS])
    reps_addr, nwords = int(info[Info.REPS]), int(info[Info.NREPS])
    words = np.empty(0, np.int64)
    try:
        if status == Status.OUT_OF_MEMORY:
            raise MemoryError(
                f"rips_persistence: the Rips complex of n={n} points up to dimension {maxdim} at threshold {thr:g} "
                f"needs more than the {A.fmt_bytes(budget)} memory budget ({BUDGET_FRACTION:.0%} of available memory): "
                f"building "
                f"dimension {int(info[Info.FAIL_DIM])} asked for {A.fmt_bytes(int(info[Info.FAIL_BYTES]))}; lower maxdim or the threshold")
        if status == Status.CANCELLED:
            raise Cancelled("rips_persistence: cancelled")
        if status == Status.INCONSISTENT:
            raise RuntimeError("rips_persistence: the mojo engine's homology reduction met a low without a "
                               "cohomology partner (an engine bug); please report it with the input")
        if status != Status.OK:
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
    per_field = stats.reshape(dims + 1, STAT.words).T.tolist()  # (Python ints: one conversion, not one per value)
    _last_stats = {f: [v * 1e-9 for v in col] if f.endswith("_s") else col for f, col in zip(STAT_FIELDS, per_field)}
    _last_stats["seconds"] = [a + b + c for a, b, c in zip(_last_stats["assemble_s"], _last_stats["search_s"], _last_stats["reduce_s"])]
    _last_stats["peak_bytes"] = int(info[Info.PEAK_BYTES])
    _last_stats["engine"], _last_stats["engine_reason"] = engine
    if estimate is not None:  # the memory estimate made before the run, next to the engine's peak_bytes
        _last_stats["estimate_bytes"] = estimate["estimate_bytes"]
        _last_stats["estimate_lower_bytes"] = estimate["lower_bytes"]
        _last_stats["estimate_simplices"] = estimate["simplices"]["estimate"][:dims + 1]
        _last_stats["estimate_counted"] = estimate["counted"]
    deaths = np.where(bars[:, 2] < 0, np.inf, bars[:, 2])
    dim = bars[:, 0].astype(np.int64)
    dgms = [np.stack([bars[dim == k, 1], deaths[dim == k]], axis=1) for k in range(dims + 1)]
    if not prob.reps:
        return dgms
    cycles, cocycles = _parse_reps(words, dim, prob.reps)
    return Bars(dgms, cycles, cocycles)
