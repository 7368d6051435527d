"""Strong edge collapse of a flag filtration (Glisse & Pritam's backward pass, as gudhi's
``Flag_complex_edge_collapser``): the binding of ``kernels/aura_kernels/persistence/collapse.mojo``
and the rule that switches it on in ``rips_persistence``.

``collapse_edges(n, i, j, d)`` returns a smaller edge list (values possibly raised) whose flag
filtration has the same persistence diagrams (bars with death > birth) in every dimension:
K'_t is a subcomplex of K_t with the same homotopy type for every t. Passes repeat while one
removes at least ``MIN_REMOVED`` of the edges left, up to ``MAX_PASSES``.

``rips_persistence(..., collapse_edges="auto" | True | False)``: when on, the radius graph
(``graph._sparse_graph``) is collapsed and the sparse engine runs on the result
(``kernels._mojo_impl``). ``"auto"`` (``resolve``) collapses for maxdim >= 3, and for
maxdim 2 when the engine would run on the sparse radius graph anyway; not for maxdim <= 1
(where the engine's apparent pairs already make H1 cheap; ph-scale.md §2), not for dense
maxdim-2 problems (measured slower: ``AUTO_MIN_MAXDIM``), never with representatives. Cocycles of the collapsed filtration are not cocycles of the
original complex: ``collapse_edges=True`` with ``return_cocycles`` is refused; cycles are
(K'_t ⊆ K_t and the inclusion is a homotopy equivalence; tests check them with the
representatives' oracle on the original complex).
"""

from __future__ import annotations

import time

import numpy as np

from .. import _arrays as A
from .. import _control, _mojo
from .._abi import ADDR, FLOAT, INT, KernelABI, Slots
from ..errors import Cancelled
from .problem import STAGE, STATUS, Status

#: the kernel's info[] (Info.PASS0 + 2 max_passes,) int64: status (STATUS: ok or cancelled), edges
#: out, passes run, then from PASS0 the edges left after each pass, and from PASS0 + max_passes
#: each pass's nanoseconds
INFO = Slots("info", ("status", "edges", "passes", "pass0"), prefix="INFO_")
Info = INFO.enum
#: the kernel's parameter block (kernels/aura_kernels/persistence/collapse_abi.mojo is generated from it)
ABI = KernelABI("collapse", [("dtype_bits", INT), ("n", INT), ("m", INT), ("u", ADDR), ("v", ADDR), ("f", ADDR),
                             ("max_passes", INT), ("min_removed", FLOAT), ("info", ADDR),
                             ("u_out", ADDR), ("v_out", ADDR), ("f_out", ADDR)], outputs=(STATUS, INFO, STAGE),
                 module="persistence.collapse_abi")

#: at most this many passes (the project's gudhi reference iterates up to 10)
MAX_PASSES = 10
#: another pass runs while the last one removed at least this fraction of the edges it got
#: (gudhi's table in ph-scale.md §2: o3_1024 33,189 -> 12,457 -> 9,183 -> 7,768 ... 7,207 after 5)
MIN_REMOVED = 0.02
#: ``collapse_edges`` values
CHOICES = ("auto", True, False)
#: "auto" collapses from this maxdim on, and at maxdim 2 when the engine would run sparse (a
#: thresholded cloud of >= SPARSE_MIN_N points, sparse input). Measured on the loaded 2-core VM
#: (one process each, s with / without collapse): o3_1024 maxdim 3 t 1.8 0.71 / 5.4, random16
#: maxdim 7 0.25 / 6.5 (tools/bench_collapse.py); but sphere3 maxdim 2 (enclosing radius,
#: 17,857 -> 17,701 edges) 4.5 / 3.9 and fract-r maxdim 2 (a complete graph of 130,816 edges,
#: 14 s of collapse: dominance tests cost ~deg^2 per edge on dense graphs) 12.7 / 3.0.
AUTO_MIN_MAXDIM = 3
_MAX_N = 2**31 - 1


def check_choice(collapse_edges) -> bool | str:
    """``collapse_edges`` checked: True, False or "auto" (TypeError naming it otherwise)."""
    if isinstance(collapse_edges, (bool, np.bool_)):
        return bool(collapse_edges)
    if isinstance(collapse_edges, str) and collapse_edges == "auto":
        return "auto"
    raise TypeError(f"collapse_edges: expected True, False or 'auto', got {collapse_edges!r}")


def resolve(choice: bool | str, maxdim: int, cycles: bool, cocycles: bool, sparse: bool = False) -> tuple[bool, str]:
    """(collapse?, why) for a checked choice (``sparse``: the engine would run on the radius
    graph without collapse); ValueError for True with cocycles."""
    if choice is True:
        if cocycles:
            raise ValueError("collapse_edges: cocycles of the collapsed filtration are not cocycles of the original "
                             "complex (the collapse removes edges they would have to vanish on); pass "
                             "collapse_edges=False (or 'auto') with return_cocycles=True")
        return True, "requested"
    if choice is False:
        return False, "not requested"
    if cycles or cocycles:
        return False, "auto: off with representatives"
    if maxdim >= AUTO_MIN_MAXDIM:
        return True, f"auto: maxdim={maxdim} >= {AUTO_MIN_MAXDIM}"
    if maxdim == 2 and sparse:
        return True, "auto: maxdim=2 on a sparse radius graph"
    return False, f"auto: maxdim={maxdim}" + (" < 2" if maxdim < 2 else " on a dense problem")


def _check_edges(n, i, j, d):
    """The edge list checked before any pointer reaches the kernel: int32 copies of i, j and a
    contiguous float32/float64 d."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n: expected an integer, got {type(n).__name__}")
    n = int(n)
    if n < 0 or n > _MAX_N:
        raise ValueError(f"n: must lie in [0, {_MAX_N}], got {n}")
    arrs = []
    for name, a in (("i", i), ("j", j)):
        a = np.asarray(a)
        if a.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D array, got shape {a.shape}")
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"{name}: expected integer vertex ids, got {a.dtype}")
        arrs.append(a.astype(np.int64, copy=False))
    i64, j64 = arrs
    d = np.asarray(d)
    if d.ndim != 1:
        raise ValueError(f"d: expected a 1-D array, got shape {d.shape}")
    if d.dtype not in (np.float32, np.float64):
        raise TypeError(f"d: expected float32 or float64 (the filtration's dtype), got {d.dtype}")
    if not (i64.size == j64.size == d.size):
        raise ValueError(f"i, j, d: expected equal lengths, got {i64.size}, {j64.size}, {d.size}")
    if i64.size:
        if min(i64.min(), j64.min()) < 0 or max(i64.max(), j64.max()) >= n:
            raise ValueError(f"i, j: vertex ids must lie in [0, {n})")
        if np.any(i64 == j64):
            raise ValueError("i, j: self loops (i == j) are not edges")
        if not np.all(np.isfinite(d)):
            raise ValueError("d: edge values must be finite")
        lo, hi = np.minimum(i64, j64), np.maximum(i64, j64)
        key = np.sort(lo * n + hi)
        if np.any(key[1:] == key[:-1]):
            raise ValueError("i, j: an edge is listed twice")
    return n, np.ascontiguousarray(i64, np.int32), np.ascontiguousarray(j64, np.int32), np.ascontiguousarray(d)


def collapse_edges(n, i, j, d, *, max_passes: int = MAX_PASSES, min_removed: float = MIN_REMOVED):
    """The strong edge collapse of the flag filtration of the edges {i[k], j[k]} at d[k] on
    ``n`` vertices (vertices at 0; each pair once; d float32 or float64, finite).

    Returns ``(i, j, d, stats)``: the kept edges (int32, int32, d's dtype; i < j, by
    decreasing value) and ``stats`` = {"passes", "edges_before", "edges_after" and
    "pass_seconds" (per pass), "seconds" (the whole call)}. Raises TypeError / ValueError
    naming the argument for bad input, ``MemoryError`` when the kernel's arrays would not
    fit, ``Cancelled`` when cancelled."""
    n, i32, j32, d = _check_edges(n, i, j, d)
    if isinstance(max_passes, (bool, np.bool_)) or not isinstance(max_passes, (int, np.integer)) or not 1 <= max_passes <= 64:
        raise ValueError(f"max_passes: an integer in [1, 64], got {max_passes!r}")
    if not 0.0 <= float(min_removed) <= 1.0:
        raise ValueError(f"min_removed: a fraction in [0, 1], got {min_removed!r}")
    out = (np.empty(d.size, np.int32), np.empty(d.size, np.int32), np.empty(d.size, d.dtype))
    k, stats = _run_kernel(n, i32, j32, d, out, max_passes, min_removed)
    return tuple(a[:k].copy() for a in out) + (stats,)


def collapse_in_place(n: int, i: np.ndarray, j: np.ndarray, d: np.ndarray) -> tuple[int, dict]:
    """``collapse_edges`` for the upper pairs of a CSR graph the project built itself
    (``upper_pairs`` of ``radius_graph`` / ``csr_from_pairs``: each pair once): the kept edges
    are written over ``i[:k], j[:k], d[:k]`` (the kernel copies its input first), so no copies
    of the m edges are made. Returns ``(k, stats)``. The checks that guard the kernel's
    pointers stay (dtypes, lengths, vertex range, no self loops, finite values); the duplicate
    pair sort of ``collapse_edges`` is skipped."""
    for name, a, dt in (("i", i, (np.int32,)), ("j", j, (np.int32,)), ("d", d, (np.float32, np.float64))):
        if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype not in dt or not a.flags.c_contiguous \
                or not a.flags.writeable or a.size != i.size:
            raise TypeError(f"{name}: expected a writeable contiguous 1-D {'/'.join(map(str, dt))} array of "
                            f"{i.size} entries")
    if d.size and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= n or np.any(i == j)
                   or not np.all(np.isfinite(d))):
        raise ValueError(f"i, j, d: expected edges on [0, {n}) without self loops and with finite values")
    return _run_kernel(int(n), i, j, d, (i, j, d), MAX_PASSES, MIN_REMOVED)


def _run_kernel(n, i32, j32, d, out, max_passes, min_removed) -> tuple[int, dict]:
    """The kernel on checked arrays; the kept edges go to ``out`` (u, v, f; may be the input
    arrays themselves). Returns (their count, stats)."""
    m = int(d.size)
    stats = {"passes": 0, "edges_before": m, "edges_after": [], "pass_seconds": [], "seconds": 0.0}
    if m == 0:
        return 0, stats
    ok, _, reason = _mojo.status()
    if not ok:
        raise _mojo.MojoUnavailable(f"collapse_edges: the mojo kernels are unavailable: {reason}")
    isz = d.itemsize
    edge_bytes = 8 + (4 if isz == 4 else 8) + (4 if isz == 4 else 0)  # Edge[T]: f, u, v (padded)
    A.check_memory(m * (edge_bytes + 2 * 2 * (4 + isz)) + 6 * 8 * (n + 1),
                   f"collapse_edges: the neighbourhoods of {m} edges on {n} vertices")
    kernel = _mojo.load("persistence")
    info = np.zeros(Info.PASS0 + 2 * max_passes, np.int64)
    u_out, v_out, f_out = out
    block = ABI.pack(dtype_bits=8 * isz, n=n, m=m, u=i32, v=j32, f=d, max_passes=int(max_passes),
                     min_removed=float(min_removed), info=info, u_out=u_out, v_out=v_out, f_out=f_out)
    t0 = time.perf_counter()
    _control.native(lambda: kernel.collapse(block.address))
    stats["seconds"] = time.perf_counter() - t0
    status = int(info[Info.STATUS])
    if status == Status.CANCELLED:
        raise Cancelled("collapse_edges: cancelled")
    if status != Status.OK:
        raise RuntimeError(f"collapse_edges: the kernel failed with status {status}")
    passes = int(info[Info.PASSES])
    stats["passes"] = passes
    stats["edges_after"] = [int(x) for x in info[Info.PASS0:Info.PASS0 + passes]]
    stats["pass_seconds"] = [int(x) * 1e-9 for x in info[Info.PASS0 + max_passes:Info.PASS0 + max_passes + passes]]
    return int(info[Info.EDGES]), stats


def upper_pairs(indptr: np.ndarray, indices: np.ndarray, dists: np.ndarray):
    """The edges (i < j; int32 i, j) of a symmetric CSR graph (both directions stored)."""
    rows = np.repeat(np.arange(indptr.size - 1, dtype=np.int32), np.diff(indptr))
    keep = rows < indices
    return rows[keep], indices[keep], dists[keep]


def describe(stats: dict) -> str:
    """A line for ``last_dispatch().reason``."""
    after = stats["edges_after"][-1] if stats["edges_after"] else stats["edges_before"]
    line = (f"edge collapse: {stats['edges_before']} -> {after} edges in {stats['passes']} "
            f"pass{'es' if stats['passes'] != 1 else ''} ({stats['seconds']:.3g} s")
    if stats["passes"] > 1:
        line += "; after each pass: " + ", ".join(
            f"{k} in {1e3 * s:.3g} ms" for k, s in zip(stats["edges_after"], stats["pass_seconds"]))
    return line + ")"
