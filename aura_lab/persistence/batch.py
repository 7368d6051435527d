"""Many small problems in one native call: ``rips_batch(xs, maxdim, threshold, coeff,
is_matrix)``, the diagrams of every point cloud (or distance matrix) of a collection from one
call into the batched engine (``kernels/aura_kernels/persistence/batch.mojo``), which runs the
problems in parallel over its own threads, each through the single-call engine on one thread:
every problem's diagrams are bit for bit those of ``rips_persistence`` on it (the same
distances, threshold, engine and sorting).

What the batch takes (``batch_limits`` says why not, per collection or per input): the mojo
backend; euclidean point clouds, or distance matrices with a zero diagonal; fewer than
``BATCH_MAX_N`` points (a larger cloud with a finite threshold runs on the sparse engine, and
every thread allocates its problem's (n, n) matrix inside the call); no edge collapse (the
single call collapses at maxdim >= 3 under "auto"). The rest runs one ``rips_persistence``
call per input (``aura_lab.collection``).
"""

from __future__ import annotations

import ctypes
import math

import numpy as np

from .. import _arrays as A
from .. import _control, _mojo
from .._abi import ADDR, BOOL, INT, KernelABI, Slots
from ..errors import Cancelled
from ..registry import backend_status, num_threads
from .estimate import _engine_budget
from .kernels import SPARSE_MIN_N, _check_index_range
from .problem import INFO, STAGE, STATUS, Info, Status, _distance_matrix, _engine_dims, effective_threshold

#: the batch's result[]: its status (that of the first problem that failed), the address and count
#: of every problem's bars in one float64 buffer, the index of the problem that failed (-1: none)
RESULT = Slots("result", ("status", "bars", "nbars", "failed"), prefix="RESULT_")
Result = RESULT.enum
#: the status Python leaves in a problem's info until the engine ran it (the batch was cancelled first)
NOT_RUN = -1
#: the batched engine's parameter block (generated Mojo side: persistence/batch_abi.mojo):
#: ``data`` every problem's float32 / float64 values back to back, problem c from element
#: ``starts[c]``, an ``(sizes[c], dims[c])`` cloud or (``is_matrix``) the full matrix;
#: ``maxdims`` / ``thresholds`` / ``order`` int64 / float64 / int64 per problem; ``info``
#: ``(count, INFO.words)`` int64 (the engine's info per problem), ``result`` (RESULT.words,) int64
ABI = KernelABI("persistence_batch", [("dtype_bits", INT), ("is_matrix", BOOL), ("data", ADDR), ("starts", ADDR),
                                      ("sizes", ADDR), ("dims", ADDR), ("maxdims", ADDR), ("thresholds", ADDR),
                                      ("order", ADDR), ("count", INT), ("modulus", INT), ("threads", INT),
                                      ("budget", INT), ("info", ADDR), ("result", ADDR)],
                outputs=(STATUS, INFO, RESULT, STAGE), module="persistence.batch_abi")

#: inputs of this many points or more run one call each (see the module docstring)
BATCH_MAX_N = SPARSE_MIN_N
#: for the choice of worker processes and of an interruptible call: the engine's CPU time per
#: input on one thread, NS_PER_SIMPLEX[maxdim] per simplex of the full complex up to dimension
#: maxdim + 1 (C(n, maxdim + 2)) plus NS_PER_INPUT; maxdims above 2 take maxdim 2's rate
NS_PER_SIMPLEX = {0: 44.4, 1: 8.78, 2: 2.35}
NS_PER_INPUT = 60_000.0
# Fitted (least squares on relative error) by `python tools/fit_batch_cost.py`: the
# collection bench's noisy shapes in R^3, 8 to 64 per single-thread batched call, median CPU
# time of 3 calls per cloud; the 2-core VM at load ~10 (other jobs), so a cell swings by ~20%.
# Measured / fitted per cloud (the old single rate, 10 ns per simplex and 20 us per input, was
# 1.18x the measurement at 200 points, maxdim 1, 0.1-0.4x of it at maxdim 0, 1-5.5x at maxdim 2):
#   n                    maxdim 0              maxdim 1              maxdim 2
#   30              75 us / 79 us        107 us / 96 us       304 us / 124 us
#   50            120 us / 114 us       250 us / 232 us       933 us / 600 us
#   70            124 us / 167 us       602 us / 541 us       2.7 ms / 2.2 ms
#   100           227 us / 280 us       1.3 ms / 1.5 ms       9.7 ms / 9.3 ms
#   140           536 us / 492 us       3.6 ms / 4.0 ms     27.7 ms / 36.0 ms
#   200           1.1 ms / 944 us     11.2 ms / 11.6 ms   154.2 ms / 151.9 ms
#   280           2.1 ms / 1.8 ms     30.6 ms / 31.8 ms       0.58 s / 0.59 s
#   400           6.6 ms / 3.6 ms    109.6 ms / 93.0 ms       2.20 s / 2.47 s
# Within 0.85-1.1x at maxdim 1 (the collections' case), 0.55-1.34x at maxdim 0 (the edge sort
# grows as n^2 log n), 0.41-1.3x at maxdim 2: an estimate for choosing, not a prediction.


def batch_limits(backend: str, metric: str, is_matrix: bool, maxdim: int, collapse_edges) -> str | None:
    """Why the whole collection cannot run batched (``None``: it can)."""
    if backend not in ("auto", "mojo"):
        return f"backend={backend!r}"
    if not is_matrix and metric != "euclidean":
        return f"metric={metric!r} (the batch computes euclidean distances)"
    if collapse_edges is True or (collapse_edges == "auto" and maxdim >= 3):
        return "edge collapse (collapse_edges=True, or 'auto' at maxdim >= 3)"
    st = backend_status("mojo")
    return None if st.available else f"mojo unavailable ({st.reason})"


def input_limit(x: np.ndarray, is_matrix: bool) -> str | None:
    """Why the input ``x`` (a validated 2-D array) runs a call of its own (``None``: batched)."""
    if x.shape[0] >= BATCH_MAX_N:
        return f"n >= {BATCH_MAX_N}"
    if is_matrix and x.size and np.any(np.diagonal(x) != 0):
        return "a matrix with vertex births (nonzero diagonal)"
    return None


def estimated_ns(sizes: np.ndarray, maxdim: int) -> float:
    """The inputs' estimated single-thread engine time (``NS_PER_SIMPLEX``, ``NS_PER_INPUT``)."""
    n = np.asarray(sizes, np.float64)
    k = maxdim + 2
    simplices = np.prod([np.maximum(n - i, 0) for i in range(k)], axis=0) / math.factorial(k)
    return float(np.sum(simplices) * NS_PER_SIMPLEX[min(maxdim, 2)] + n.size * NS_PER_INPUT)


def rips_batch(xs: list[np.ndarray], maxdim: int, threshold: float, coeff: int, is_matrix: bool,
               threads: int | None = None, index: list[int] | None = None) -> list[list[np.ndarray]]:
    """The ``maxdim + 1`` diagrams of every input, as ``rips_persistence(x, maxdim=maxdim,
    threshold=threshold, coeff=coeff, distance_matrix=is_matrix)`` returns them, from one
    native call per dtype (float32 inputs keep a float32 filtration). ``xs``: 2-D arrays
    that pass ``input_limit`` (point clouds with finite coordinates; matrices are checked
    here, ``ValueError`` "X[i]: ..."); ``threads``: default ``num_threads()``; ``index``: the
    inputs' positions that errors name (default 0, 1, ...)."""
    index = list(range(len(xs))) if index is None else index
    out: list = [None] * len(xs)
    groups: dict = {}
    for i, x in enumerate(xs):
        groups.setdefault(A.result_float_dtype(x), []).append(i)
    for dtype, members in groups.items():
        for i, dgms in zip(members, _run_group([xs[i] for i in members], dtype, maxdim, threshold, coeff, is_matrix,
                                               threads, [index[i] for i in members])):
            out[i] = dgms
    return out


def _run_group(xs, dtype, maxdim, threshold, coeff, is_matrix, threads, index) -> list[list[np.ndarray]]:
    """One native call over inputs of one dtype (``index``: their positions, for errors); an
    empty input has empty diagrams (as the single call, without the engine)."""
    empty = [np.empty((0, 2)) for _ in range(maxdim + 1)]
    full = [k for k, x in enumerate(xs) if x.shape[0] > 0]
    out = [list(empty) for _ in xs]
    if not full:
        return out
    xs, index = [xs[k] for k in full], [index[k] for k in full]
    sizes = np.array([x.shape[0] for x in xs], np.int64)
    maxdims = np.array([_engine_dims(int(n), maxdim) for n in sizes], np.int64)
    _check_index_range(int(sizes.max()), int(maxdims.max()), maxdim, coeff)
    data, thresholds, dims = _operands(xs, dtype, threshold, is_matrix, index)
    starts = np.zeros(len(xs), np.int64)
    np.cumsum([v.size for v in data[:-1]], out=starts[1:])
    info = np.zeros((len(xs), INFO.words), np.int64)
    info[:, Info.STATUS] = NOT_RUN
    result = np.zeros(RESULT.words, np.int64)
    order = np.argsort(-sizes, kind="stable")  # largest first: the threads end together
    nt = max(1, min(num_threads() if threads is None else threads, len(xs)))
    data, budget = np.concatenate(data), max(1, _engine_budget() // nt)

    def block():  # packed inside the op call: its control is the one Ctrl-C and cancel() set
        return ABI.pack(dtype_bits=8 * dtype.itemsize, is_matrix=is_matrix, data=data, starts=starts, sizes=sizes,
                        dims=dims, maxdims=maxdims, thresholds=thresholds, order=order, count=len(xs), modulus=coeff,
                        threads=nt, budget=budget, info=info, result=result)

    bars = _call(block, result, index, budget, long=estimated_ns(sizes, maxdim) >= _control.INTERRUPTIBLE_NS)
    for k, dgms in zip(full, _split(bars, info[:, Info.NBARS], len(xs), maxdim)):
        out[k] = dgms
    return out


def _operands(xs, dtype, threshold, is_matrix, index):
    """Per input its values (flattened, ``dtype``), threshold and coordinate dimension."""
    if is_matrix:
        data, thresholds = [], []
        for i, x in zip(index, xs):
            try:
                D = _distance_matrix(x, "euclidean", True)
            except ValueError as e:
                raise ValueError(f"X[{i}]: {str(e).removeprefix('X: ')}") from None
            data.append(D.ravel())
            thresholds.append(effective_threshold(D, threshold))
        return data, np.array(thresholds, np.float64), np.zeros(len(xs), np.int64)
    data = [np.ascontiguousarray(x, dtype).ravel() for x in xs]
    dims = np.array([x.shape[1] for x in xs], np.int64)
    return data, np.full(len(xs), A.round_down(threshold, dtype), np.float64), dims


def _call(block, result: np.ndarray, index, budget: int, long: bool) -> np.ndarray:
    """The native call on the parameter block ``block()`` (interruptible when ``long``); the
    (total, 3) bars, the buffer freed."""
    kernel = _mojo.load("persistence")

    def run():
        b = block()
        _control.native(lambda: kernel.rips_batch(b.address))

    try:
        _control.run_op(run, long=long)
        status, addr, total, failed = (int(result[s]) for s in Result)
        if status in (Status.CANCELLED, NOT_RUN):
            raise Cancelled("rips_persistence: cancelled")
        where = f"X[{index[failed]}]" if failed >= 0 else "X"
        if status == Status.OUT_OF_MEMORY:
            raise MemoryError(f"{where}: the Rips complex needs more than the engine's memory budget (its share of "
                              f"the batch: {A.fmt_bytes(budget)}); lower maxdim or the threshold")
        if status != Status.OK:
            raise RuntimeError(f"{where}: the mojo engine failed with status {status}")
        if not total:
            return np.empty((0, 3))
        return np.frombuffer((ctypes.c_double * (3 * total)).from_address(addr), np.float64).reshape(total, 3).copy()
    finally:
        if result[Result.BARS]:
            kernel.free_bars(int(result[Result.BARS]))
            result[Result.BARS] = 0


def _split(bars: np.ndarray, counts: np.ndarray, count: int, maxdim: int) -> list[list[np.ndarray]]:
    """Per input its ``maxdim + 1`` diagrams as ``result._finish`` gives them: bars with death >
    birth (-1 = infinite), sorted by birth then death -- the engine's order (it sorts each
    input's bars by dimension, birth, death), so the diagrams are views of one array."""
    group = np.repeat(np.arange(count) * (maxdim + 1), counts) + bars[:, 0].astype(np.int64)
    birth = bars[:, 1]
    death = np.where(bars[:, 2] < 0, np.inf, bars[:, 2])
    keep = death > birth
    pairs = np.stack([birth[keep], death[keep]], axis=1)
    group = group[keep]
    bounds = np.searchsorted(group, np.arange(count * (maxdim + 1) + 1)).tolist()
    return [[pairs[bounds[g]:bounds[g + 1]] for g in range(c * (maxdim + 1), (c + 1) * (maxdim + 1))]
            for c in range(count)]
