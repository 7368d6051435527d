"""Neighbour search without an n x n matrix: ``radius_graph(X, r, metric)`` -> CSR.

The radius graph of a point cloud: every ordered pair (i, j), i != j, with
``dist(X[i], X[j]) <= r``, as ``(indptr, indices, dists)``:

* ``indptr`` int64 ``(n + 1,)``; row ``i`` is ``indices[indptr[i]:indptr[i + 1]]``;
* ``indices`` int32, ascending within each row (both directions are stored: the graph is
  symmetric, ``j`` in row ``i`` iff ``i`` in row ``j``);
* ``dists`` the distances, float32 for float32 input and float64 otherwise (the dtype of the
  dense matrix ``pairwise_distances`` gives, which the persistence engine filters).

Conventions shared with the persistence code, so that a filtration built from this graph is
the one built from the dense matrix (``rips_persistence`` / ``persistence.inputs`` keep an edge iff
``D[i, j] <= threshold``, threshold rounded down to the matrix dtype):

* each stored distance is bit for bit ``pairwise_distances(X, metric, backend="mojo")[i, j]``
  (same formula, same order of operations, same work dtype, see ``distance.problem.work_dtype``);
* an edge is present iff that value ``<= r`` (inclusive: points exactly at distance ``r`` are
  neighbours; ``r = 0`` links exact duplicates only; ``r = inf`` gives all pairs).

Two kernels (``kernels/aura_kernels/neighbors/kernel.mojo``, bound as ``radius_graph`` in the
persistence extension module), each a COUNT call (row degrees), a memory check here, then a
FILL call straight into the CSR arrays:

* ``grid`` (euclidean in up to ``GRID_MAX_D`` dimensions): cells of side ~r, the 3^d
  neighbouring cells; points sorted by cell here with numpy; each row's hits sorted by index
  in the kernel;
* ``tiles`` (every metric, any dimension): the distance kernel's blocked tiles, all pairs
  tested, nothing n x n stored.

``method="auto"`` picks the cheaper by the measured cost model of ``_choose`` (numbers there).

Not wired into ``rips_persistence`` yet (that comes with the sparse engine).
"""

from __future__ import annotations

import math

import numpy as np

from . import _arrays as A
from . import _control, _mojo, registry
from ._abi import ADDR, FLOAT, INT, Enumeration, KernelABI
from .distance import METRIC, METRIC_INFO, METRICS, work_dtype

PATH = Enumeration("path", ("grid", "tiles"))
STAGE = Enumeration("stage", ("count", "fill"))
#: the kernel's parameter block (kernels/aura_kernels/neighbors/abi.mojo is generated from it)
ABI = KernelABI("neighbors", [
    ("work_bits", INT), ("out_bits", INT), ("metric", INT), ("path", INT), ("stage", INT),
    ("x", ADDR), ("n", INT), ("d", INT), ("radius", FLOAT), ("acc_radius", FLOAT), ("threads", INT),
    ("order", ADDR), ("ys", ADDR), ("ldy", INT), ("cellstart", ADDR), ("pcell", ADDR), ("strips", ADDR),
    ("nstrips", INT), ("maxdeg", INT), ("counts", ADDR), ("cursor", ADDR), ("indices", ADDR), ("dists", ADDR),
], enums=(METRIC, PATH, STAGE))

METHODS = ("auto", "grid", "tiles")
#: metrics the grid path takes (others, and any metric in high dimensions, run on tiles)
GRID_METRICS = ("euclidean",)
#: highest dimension the grid path takes (3^(d-1) strips per point: 81 at d = 5)
GRID_MAX_D = 5
#: cells are this much wider than r: a pair whose computed distance is <= r has a true one at
#: most (d/2 + 3) * 2^-24 * r larger (float32, see tests/unit/test_neighbors.py), far below this
GRID_MARGIN = 1e-5
#: the grid has at most this many cells per point (then its cells grow beyond r)
GRID_CELLS_PER_POINT = 8
#: int32 indices
MAX_N = 2**31 - 1


def radius_graph(X, r, metric: str = "euclidean", *, threads: int | None = None, method: str = "auto"):
    """The radius graph of the rows of ``X`` in CSR: ``(indptr, indices, dists)``.

    Args:
        X: ``(n, d)`` point cloud (numpy array, CPU torch tensor, or anything ``np.asarray``
            takes), finite. float32 stays float32; every other real dtype runs in float64.
        r: the radius, ``>= 0`` (``inf``: all pairs). Pairs at distance exactly ``r`` are edges.
        metric: ``euclidean``, ``sqeuclidean``, ``cosine``, ``cityblock`` or ``chebyshev``
            (as ``pairwise_distances``; ``r`` is compared with that metric's values).
        threads: threads for the kernels (None: aura_lab's policy, ``AURA_NUM_THREADS``).
        method: ``"auto"`` (cost model), ``"grid"`` or ``"tiles"`` (forced).

    Returns:
        ``indptr`` int64 ``(n + 1,)``, ``indices`` int32 (each row ascending, both
        directions), ``dists`` float32 for float32 ``X`` else float64: for every stored
        (i, j) exactly the dense ``pairwise_distances(X, metric=metric)[i, j]`` of the mojo
        backend. See the module docstring.

    Raises:
        TypeError: naming the argument, for an argument of the wrong kind.
        ValueError: naming the argument, for a bad value.
        MemoryError: with the estimate, when the graph would not fit in available memory
            (checked after counting, before the CSR is allocated).
        aura_lab.Cancelled: when cancelled.
    """
    prob = _validate(X, r, metric, threads, method)
    n = prob["n"]
    out_dtype = prob["out"]
    if n < 2:
        return np.zeros(n + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, out_dtype)
    ok, _, reason = _mojo.status()
    if not ok:
        raise _mojo.MojoUnavailable(f"radius_graph: the mojo kernels are unavailable: {reason}")
    est_ns = _estimate_tiles_ns(n, prob["d"])
    return _control.run_op(lambda: _run(prob), long=est_ns >= _control.INTERRUPTIBLE_NS)


# ------------------------------------------------------------------------------ validation

def _validate(X, r, metric, threads, method) -> dict:
    if not isinstance(metric, str) or metric not in METRIC_INFO:
        raise ValueError(f"metric: unknown metric {metric!r}; valid metrics: {', '.join(METRICS)}")
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
    if method == "grid" and metric not in GRID_METRICS:
        raise ValueError(f"method: the grid path takes the metrics {', '.join(GRID_METRICS)}, not {metric!r}")
    if isinstance(r, (bool, np.bool_)) or not isinstance(r, (int, float, np.integer, np.floating)):
        raise TypeError(f"r: expected a real number, got {type(r).__name__}")
    r = float(r)
    if math.isnan(r) or r < 0:
        raise ValueError(f"r: must be >= 0 (inf for all pairs), got {r}")
    if threads is not None:
        if isinstance(threads, (bool, np.bool_)) or not isinstance(threads, (int, np.integer)):
            raise TypeError(f"threads: expected an integer or None, got {type(threads).__name__}")
        if threads < 1:
            raise ValueError(f"threads: must be >= 1, got {threads}")
        threads = int(threads)
    Xn = A.to_numpy(X, "X")
    if Xn.ndim != 2:
        raise ValueError(f"X: expected a 2-D point cloud (n, d), got {Xn.ndim}-D shape {Xn.shape}")
    n, d = Xn.shape
    if n > MAX_N:
        raise ValueError(f"X: at most {MAX_N} points (int32 indices), got {n}")
    if not np.all(np.isfinite(Xn)):
        raise ValueError("X: the point cloud contains NaN or infinite coordinates")
    if method == "grid" and d > GRID_MAX_D:
        raise ValueError(f"method: the grid path takes up to d={GRID_MAX_D} dimensions, X has d={d}")
    out = A.result_float_dtype(Xn)
    work = work_dtype(out, metric, Xn)  # the dense kernel's rule: the same distances bit for bit
    if metric == "cosine" and n:
        zero = np.flatnonzero(~np.any(Xn != 0, axis=1))
        if zero.size:
            raise ValueError(f"X: the cosine distance is undefined (NaN) for zero vectors, e.g. row {int(zero[0])}")
    return {"X": Xn, "n": n, "d": d, "r": r, "metric": metric, "threads": threads, "method": method,
            "out": np.dtype(out), "work": np.dtype(work), "r_out": A.round_down(r, out)}


def _acc_radius(r_out: float, work, out) -> float:
    """The largest sum of squares ``a`` of the work dtype whose distance, as the kernels compute
    it (``sqrt`` in the work dtype, then the cast to the output dtype), is ``<= r_out``: the grid
    tests ``a <= acc_radius``, the same answer as ``sqrt(a) <= r`` bit for bit (both steps are
    monotone), without a square root per candidate. Bisection over the float's bit patterns."""
    if math.isinf(r_out):
        return math.inf
    work, out = np.dtype(work), np.dtype(out)
    it = np.uint64 if work.itemsize == 8 else np.uint32

    def ok(bits: int) -> bool:
        a = np.array(bits, it).view(work)
        with np.errstate(over="ignore"):
            return float(np.sqrt(a).astype(out)) <= r_out

    lo, hi = 0, int(np.array(np.inf, work).view(it))  # ok(lo) (r >= 0), not ok(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return float(np.array(lo, it).view(work))


# ------------------------------------------------------------------------------ cost model

# Single-thread cost model of both paths (both passes), fitted by hand to
# `python tools/bench_neighbors.py --calibrate` (1 thread, float64, uniform points in [0,1]^d;
# the shared 2-core VM at load average ~5, so +-30 %): measured grid / tiles ms
#   n=20000 d=2 r=0.01 (nnz 125k):   grid  ~50 (first call 298) / tiles 1191
#   n=20000 d=3 r=0.05 (nnz 198k):   grid    50 / tiles 1212
#   n=20000 d=4 r=0.15 (nnz 812k):   grid   121 / tiles 1044
#   n=20000 d=5 r=0.3  (nnz 3.1M):   grid   319 / tiles 1122
#   n=4000  d=3 r=0.3  (nnz 1.3M):   grid    48 / tiles   63
#   n=4000  d=4 r=0.6  (nnz 3.9M):   grid   156 / tiles   85   <- dense graphs: tiles win
#   n=8000  d=2 r=0.2  (nnz 6.7M):   grid   167 / tiles  254
# The grid pays per point (numpy layout, strips), per candidate (in both passes) and per edge
# (the row sort and write); the tiles per ordered pair and coordinate (both passes).
TILES_NS_PER_PAIR = 1.2
TILES_NS_PER_PAIR_COORD = 0.05
GRID_NS_PER_POINT_SETUP = 1000.0
GRID_NS_PER_CAND = 0.5
GRID_NS_PER_CAND_COORD = 0.1
GRID_NS_PER_STRIP = 3.0
GRID_NS_PER_EDGE = 15.0


def _estimate_tiles_ns(n: int, d: int) -> float:
    """Single-thread estimate of the tile path (both passes over all n^2 ordered pairs)."""
    return 2.0 * n * n * (TILES_NS_PER_PAIR + TILES_NS_PER_PAIR_COORD * d)


def _estimate_grid_ns(layout: dict) -> float:
    n, d = layout["n"], layout["d"]
    cand = layout["candidates"]
    # edges are unknown before counting: the ball's share of its 3^d block of cells of side r
    edges = max(0.0, cand - n) * math.pi ** (d / 2) / math.gamma(d / 2 + 1) / 3.0**d
    return (GRID_NS_PER_POINT_SETUP * n + 2.0 * cand * (GRID_NS_PER_CAND + GRID_NS_PER_CAND_COORD * d)
            + 2.0 * n * layout["nstrips"] * GRID_NS_PER_STRIP + GRID_NS_PER_EDGE * edges)


# ------------------------------------------------------------------------------ the grid

def _grid_layout(xw: np.ndarray, r: float) -> dict | None:
    """Cells of side s >= r * (1 + GRID_MARGIN), a padding layer around the box, the points
    sorted by cell; None when the layout is not worth building (see _choose)."""
    n, d = xw.shape
    x64 = xw.astype(np.float64, copy=False)
    lo = x64.min(axis=0)
    ext = x64.max(axis=0) - lo
    cap = GRID_CELLS_PER_POINT * n + 1024
    s = r * (1.0 + GRID_MARGIN) if r > 0 else 0.0
    if not s > 0 or math.isinf(s):
        s = max(float(ext.max()), 1.0)
    # grow the cells until the padded grid has at most `cap` cells (floats: no overflow)
    while True:
        g = np.floor(ext / s) + 1.0
        total = float(np.prod(g + 2.0))
        if total <= cap:
            break
        s *= (total / cap) ** (1.0 / d) * 1.01
    g = g.astype(np.int64)
    G = g + 2
    strides = np.ones(d, np.int64)
    for k in range(d - 2, -1, -1):
        strides[k] = strides[k + 1] * G[k + 1]
    ncells = int(np.prod(G))
    q = np.floor((x64 - lo) / s).astype(np.int64)
    np.clip(q, 0, g - 1, out=q)
    q += 1
    pcell = q @ strides
    order = np.argsort(pcell, kind="stable")
    counts = np.bincount(pcell, minlength=ncells)
    cellstart = np.zeros(ncells + 1, np.int64)
    np.cumsum(counts, out=cellstart[1:])
    # strips: offsets over the first d - 1 axes (the last axis: 3 consecutive cells)
    offs = np.zeros(1, np.int64)
    for k in range(d - 1):
        offs = (offs[:, None] + np.array([-1, 0, 1], np.int64)[None, :] * strides[k]).ravel()
    # candidates scanned: sum over cells of (points in it) x (points in its 3^d block)
    block = counts.reshape(tuple(G))
    for k in range(d):
        b = block.copy()
        sl = [slice(None)] * d
        sl2 = [slice(None)] * d
        sl[k], sl2[k] = slice(1, None), slice(None, -1)
        b[tuple(sl)] += block[tuple(sl2)]
        b[tuple(sl2)] += block[tuple(sl)]
        block = b
    candidates = float(np.dot(counts.astype(np.float64), block.ravel().astype(np.float64)))
    return {"n": n, "d": d, "s": s, "order": order, "pcell": pcell, "cellstart": cellstart, "strips": offs,
            "nstrips": len(offs), "candidates": candidates}


def _grid_arrays(xw: np.ndarray, layout: dict, W: int = 32):
    """The sorted copies the grid kernel reads: ``ys`` (d, ldy) coordinate-major and ``order``
    (ldy,) int32, padded by W (-1 ids, zero coordinates) so vector loads past the end are safe."""
    n, d = xw.shape
    ldy = n + W
    order = layout["order"]
    ys = np.zeros((d, ldy), xw.dtype)
    ys[:, :n] = xw[order].T
    o32 = np.full(ldy, -1, np.int32)
    o32[:n] = order
    return ys, o32, ldy


def _choose(prob: dict) -> tuple[str, dict | None]:
    """The path and, for the grid, its layout.

    Cost model (single-thread ns, both passes; constants and the measurements behind them
    above ``TILES_NS_PER_PAIR``):
      tiles: 2 n^2 (TILES_NS_PER_PAIR + TILES_NS_PER_PAIR_COORD d)
      grid:  GRID_NS_PER_POINT_SETUP n + 2 cand (GRID_NS_PER_CAND + GRID_NS_PER_CAND_COORD d)
             + 2 n 3^(d-1) GRID_NS_PER_STRIP + GRID_NS_PER_EDGE edges,
    cand = sum over cells of |cell| |3^d block| (exact, from the layout), edges ~ cand x the
    volume of the unit d-ball / 3^d (the ball's share of its block of cells of side r).
    """
    method, metric, n, d, r = prob["method"], prob["metric"], prob["n"], prob["d"], prob["r"]
    if method == "tiles":
        return "tiles", None
    grid_ok = metric in GRID_METRICS and 1 <= d <= GRID_MAX_D
    if method == "auto" and (not grid_ok or math.isinf(r) or n < 512):
        return "tiles", None
    if not grid_ok:  # forced grid on d = 0: one cell, a single strip
        return "tiles", None
    xw = A.c_contiguous(prob["X"], prob["work"])
    layout = _grid_layout(xw, r)
    if method == "grid":
        return "grid", layout
    return ("grid", layout) if _estimate_grid_ns(layout) < _estimate_tiles_ns(n, d) else ("tiles", None)


# ------------------------------------------------------------------------------ running it

def _threads(prob: dict, est_ns: float) -> int:
    return prob["threads"] if prob["threads"] is not None else registry.threads_for(est_ns)


def _run(prob: dict):
    kernel = _mojo.load("persistence")
    n, d = prob["n"], prob["d"]
    work, out = prob["work"], prob["out"]
    xw = A.c_contiguous(prob["X"], work)
    path, layout = _choose(prob)
    prob["path"] = path
    acc_radius = _acc_radius(prob["r_out"], work, out) if path == "grid" else 0.0
    common = dict(work_bits=work.itemsize * 8, out_bits=out.itemsize * 8, metric=METRIC.id(prob["metric"]),
                  path=PATH.id(path), x=xw, n=n, d=d, radius=prob["r_out"], acc_radius=acc_radius)
    if path == "grid":
        threads = _threads(prob, _estimate_grid_ns(layout))
        ys, order, ldy = _grid_arrays(xw, layout)
        grid = dict(order=order, ys=ys, ldy=ldy, cellstart=layout["cellstart"], pcell=layout["pcell"],
                    strips=layout["strips"], nstrips=layout["nstrips"])
    else:
        threads = _threads(prob, _estimate_tiles_ns(n, d))
        grid = dict(order=None, ys=None, ldy=0, cellstart=None, pcell=None, strips=None, nstrips=0)
    deg = np.zeros(n, np.int64)
    blk = ABI.pack(**common, **grid, stage=STAGE.id("count"), threads=threads, maxdeg=0, counts=deg, cursor=None,
                   indices=None, dists=None)
    _control.native(lambda: kernel.radius_graph(blk.address))
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(deg, out=indptr[1:])
    nnz = int(indptr[-1])
    A.check_memory(nnz * (4 + out.itemsize) + n * 8,
                   f"radius_graph: the CSR of {nnz} neighbour entries (n={n}, r={prob['r']:g}, {prob['metric']}, "
                   f"{4 + out.itemsize} bytes each)")
    indices = np.empty(nnz, np.int32)
    dists = np.empty(nnz, out)
    cursor = indptr[:-1].copy()
    blk = ABI.pack(**common, **grid, stage=STAGE.id("fill"), threads=threads, maxdeg=int(deg.max()), counts=None,
                   cursor=cursor,
                   indices=indices, dists=dists)
    _control.native(lambda: kernel.radius_graph(blk.address))
    global _last_path
    _last_path = path
    return indptr, indices, dists


_last_path: str | None = None


def last_path() -> str | None:
    """The path (``"grid"`` or ``"tiles"``) the last ``radius_graph`` call in this process took."""
    return _last_path


# ------------------------------------------------------------------------------ reference

_P = {"euclidean": 2.0, "cityblock": 1.0, "chebyshev": np.inf}


def _pair_dist64(x: np.ndarray, i: np.ndarray, j: np.ndarray, metric: str) -> np.ndarray:
    """float64 distances of the pairs (i, j) by the metric's numpy definition."""
    a, b = x[i], x[j]
    if metric == "cosine":
        na, nb = np.sqrt(np.einsum("ij,ij->i", a, a)), np.sqrt(np.einsum("ij,ij->i", b, b))
        return np.clip(1.0 - np.einsum("ij,ij->i", a, b) / (na * nb), 0.0, 2.0)
    t = a - b
    if metric == "cityblock":
        return np.abs(t).sum(axis=1)
    if metric == "chebyshev":
        return np.abs(t).max(axis=1, initial=0.0)
    sq = np.einsum("ij,ij->i", t, t)
    return sq if metric == "sqeuclidean" else np.sqrt(sq)


def radius_graph_ref(X, r, metric: str = "euclidean"):
    """The reference: candidate pairs from ``scipy.spatial.cKDTree.query_pairs`` (p-norm for
    euclidean, cityblock, chebyshev; sqrt(r) for sqeuclidean) or brute-force blocks (cosine),
    distances by the metric's float64 numpy definition, an edge iff that float64 value <= r.
    Same CSR layout and output dtype as ``radius_graph`` (float64 values cast to it)."""
    from scipy.spatial import cKDTree

    prob = _validate(X, r, metric, None, "auto")
    n, out = prob["n"], prob["out"]
    x = np.asarray(prob["X"], np.float64)
    r = prob["r"]
    if n < 2:
        return np.zeros(n + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, out)
    if metric == "cosine" or math.isinf(r) or x.shape[1] == 0:
        rows = max(1, (4 << 20) // n)
        parts_i, parts_j = [], []
        for a in range(0, n, rows):
            b = min(n, a + rows)
            ii, jj = np.meshgrid(np.arange(a, b), np.arange(n), indexing="ij")
            keep = jj > ii
            parts_i.append(ii[keep])
            parts_j.append(jj[keep])
        i, j = np.concatenate(parts_i), np.concatenate(parts_j)
    else:
        rq = math.sqrt(r) if metric == "sqeuclidean" else r
        p = 2.0 if metric == "sqeuclidean" else _P[metric]
        pairs = cKDTree(x).query_pairs(rq * (1 + 1e-9) + 1e-300, p=p, output_type="ndarray")
        i, j = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
    d64 = _pair_dist64(x, i, j, metric)
    keep = d64 <= r
    i, j, d64 = i[keep], j[keep], d64[keep]
    return csr_from_pairs(n, i, j, d64.astype(out))


def csr_rows(indptr: np.ndarray) -> np.ndarray:
    """The row (int64) of every stored entry of a CSR graph with offsets ``indptr``."""
    return np.repeat(np.arange(indptr.size - 1, dtype=np.int64), np.diff(indptr))


def csr_from_pairs(n: int, i: np.ndarray, j: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR (both directions, ascending per row) of the undirected edges {i[k], j[k]} of length
    d[k], each pair once: the layout of ``radius_graph``."""
    rows = np.concatenate([i, j]).astype(np.int64)
    cols = np.concatenate([j, i]).astype(np.int64)
    order = np.argsort(rows * max(n, 1) + cols, kind="stable")
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return indptr, cols[order].astype(np.int32), np.ascontiguousarray(np.concatenate([d, d])[order])
