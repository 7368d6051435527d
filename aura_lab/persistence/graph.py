"""The radius graph in CSR form that the sparse engine reads: built from sparse input, from a
point cloud (``neighbors.radius_graph``, no (n, n) matrix) or from the validated dense matrix,
and the full check of a graph from anywhere else."""

from __future__ import annotations

import numpy as np

from .. import _arrays as A
from ..neighbors import csr_from_pairs, csr_rows, radius_graph
from . import inputs as G
from .problem import PersistenceProblem, _edges_threshold


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
    rows = csr_rows(indptr)
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
    indices = np.concatenate(idx) if idx else np.empty(0, np.int32)
    dists = np.concatenate(val) if val else np.empty(0, D.dtype)
    return indptr, indices, np.ascontiguousarray(dists)


def _dense_from_csr(n: int, indptr: np.ndarray, indices: np.ndarray, dists: np.ndarray) -> np.ndarray:
    """The (n, n) matrix of a CSR graph: its distances, 0 on the diagonal, inf off the edges
    (never inserted by the engine)."""
    D = np.full((n, n), np.inf, dists.dtype)
    D[csr_rows(indptr), indices] = dists
    np.fill_diagonal(D, 0)
    return D


def _density(n: int, indptr: np.ndarray) -> float:
    """The fraction of the n (n - 1) / 2 pairs that the CSR graph (both directions) holds."""
    return float(indptr[-1]) / max(1, n * (n - 1))


def _without_isolated(indptr: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """The CSR graph on its vertices that have an edge, renumbered in order: ``(kept, indptr,
    indices)`` with ``kept`` the old ids of the new vertices 0..k-1 (``None``, and the graph as
    given, when every vertex has an edge). Neighbour lists stay ascending (the renumbering is
    monotone) and the distances keep their order. Simplex indices then range over k vertices,
    not n: 10^6 points of which 24 have an edge (gudhi's ``test_big``) stay in range."""
    degree = np.diff(indptr)
    if degree.all():
        return None, indptr, indices
    kept = np.flatnonzero(degree)
    new_id = np.zeros(indptr.size - 1, np.int32)
    new_id[kept] = np.arange(kept.size, dtype=np.int32)
    sub_indptr = np.zeros(kept.size + 1, np.int64)
    np.cumsum(degree[kept], out=sub_indptr[1:])
    return kept, sub_indptr, new_id[indices]
