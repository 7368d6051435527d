"""Inputs of ``rips_persistence`` other than a point cloud or a dense matrix, and landmarks.

* ``SparseEdges``: a weighted graph (``n`` vertices, edges ``i > j`` of length ``d``, optional
  vertex birth times), from a ``scipy.sparse`` matrix (``from_sparse``) or an edge list
  ``(i, j, d)`` (``from_edge_list``), with ripser.py's conventions:

  - every stored off-diagonal entry is an edge, a missing entry is no edge, an explicitly
    stored zero is an edge of length 0, an ``inf`` entry is no edge;
  - an edge may be stored in one triangle only (ripser.py reads the upper one, so a matrix that
    holds only its lower triangle gives ripser.py no edges: we read both) or in both, then with
    values that agree within ``SYM_RTOL`` (the smaller one is used);
  - a nonzero diagonal gives vertex birth times: vertex i enters at ``D[i, i]``. As in
    ripser.py they change H0 only (the elder rule by birth, bars ``[max birth, d)``); an edge
    and a higher simplex still enter at their longest edge.
* ``greedy_permutation``: furthest-point sampling as ripser.py's ``get_greedy_perm`` (first
  point 0, ties to the smallest index), with the covering radius.

The sparse engine reads the edges in CSR form (``neighbors.csr_from_pairs``); the dense engine
reads ``SparseEdges.dense()`` (``inf`` where there is no edge), built after checking that it
fits in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _arrays as A

#: relative disagreement tolerated between the two stored values of one edge
SYM_RTOL = 1e-3


@dataclass(frozen=True)
class SparseEdges:
    """``n`` vertices; edge ``k`` joins ``i[k] > j[k]`` at length ``d[k]`` (float32 or float64,
    finite, >= 0, each pair once); ``births`` (n,) vertex birth times or ``None`` (all 0)."""

    n: int
    i: np.ndarray
    j: np.ndarray
    d: np.ndarray
    births: np.ndarray | None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    def dense(self) -> np.ndarray:
        """The ``(n, n)`` matrix of edge lengths, ``inf`` off the edges, zero diagonal."""
        n = self.n
        A.check_memory(n * n * self.d.dtype.itemsize,
                       f"the ({n}, {n}) {self.d.dtype.name} distance matrix built from the {self.i.size} edges of the sparse input")
        D = np.full((n, n), np.inf, self.d.dtype)
        D[self.i, self.j] = self.d
        D[self.j, self.i] = self.d
        np.fill_diagonal(D, 0)
        return D


def is_sparse(X) -> bool:
    from scipy import sparse  # a dependency, imported on the first call only (start-up)

    return sparse.issparse(X)


def is_edge_list(X) -> bool:
    return isinstance(X, tuple) and len(X) == 3


def from_sparse(M) -> SparseEdges:
    """The graph of a square ``scipy.sparse`` matrix (any format)."""
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"X: a sparse distance matrix must be square (n, n), got shape {M.shape}")
    coo = M.tocoo()
    return _edges(int(M.shape[0]), np.asarray(coo.row), np.asarray(coo.col), np.asarray(coo.data))


def from_dense(D: np.ndarray) -> SparseEdges:
    """The graph of a dense ``(n, n)`` distance matrix read as sparse input (for its nonzero
    diagonal: vertex births): every finite off-diagonal entry an edge, zeros included."""
    n = int(D.shape[0])
    A.check_memory(3 * 8 * n * n, f"the edge list of the ({n}, {n}) distance matrix")
    row, col = np.indices((n, n)).reshape(2, -1)
    return _edges(n, row, col, np.asarray(D).reshape(-1))


def from_edge_list(X) -> SparseEdges:
    """The graph of an edge list ``(i, j, d)``: three equal-length 1-D arrays; ``n`` is the
    largest vertex + 1 (pass a ``scipy.sparse`` matrix to have isolated vertices at the end).
    ``i == j`` entries are vertex births."""
    i, j, d = (A.to_numpy(a, f"X[{k}]") for k, a in enumerate(X))
    for k, a in enumerate((i, j, d)):
        if a.ndim != 1:
            raise ValueError(f"X[{k}]: an edge list is three 1-D arrays (i, j, d), got shape {a.shape}")
    if not (i.size == j.size == d.size):
        raise ValueError(f"X: the edge list's arrays differ in length: i {i.size}, j {j.size}, d {d.size}")
    for k, a in enumerate((i, j)):
        if a.size and not np.issubdtype(a.dtype, np.integer):
            raise TypeError(f"X[{k}]: vertex indices must be integers, got dtype {a.dtype}")
        if a.size and a.min() < 0:
            raise ValueError(f"X[{k}]: vertex indices must be >= 0, got {int(a.min())}")
    n = int(max(i.max(), j.max())) + 1 if i.size else 0
    return _edges(n, i, j, d)


def _edges(n: int, row: np.ndarray, col: np.ndarray, val: np.ndarray) -> SparseEdges:
    """Validated, canonical edges from coordinate entries (ripser.py's conventions)."""
    if row.size and (row.max() >= n or col.max() >= n):
        raise ValueError(f"X: a vertex index is out of range for n={n}: {int(max(row.max(), col.max()))}")
    if val.size and not (np.issubdtype(val.dtype, np.number) or val.dtype == np.bool_):
        raise TypeError(f"X: entries must be numbers, got dtype {val.dtype}")
    dtype = A.result_float_dtype(val) if val.size else np.dtype(np.float64)
    val = val.astype(dtype, copy=False)
    if np.isnan(val).any():
        raise ValueError("X: the sparse distance matrix contains NaN")
    if (val < 0).any():
        raise ValueError("X: the sparse distance matrix has negative entries")
    row, col = row.astype(np.int64), col.astype(np.int64)
    diag = row == col
    births = None
    if diag.any() and (val[diag] != 0).any():
        births = np.zeros(n, np.float64)
        if not np.isfinite(val[diag]).all():
            raise ValueError("X: a vertex birth time (diagonal entry) is infinite")
        births[row[diag]] = val[diag]
    off = ~diag & np.isfinite(val)
    hi, lo, v = np.maximum(row[off], col[off]), np.minimum(row[off], col[off]), val[off]
    base = max(n, 1)  # key = hi * base + lo
    key = hi * base + lo
    order = np.lexsort((v, key))
    key, v = key[order], v[order]
    first = np.r_[True, key[1:] != key[:-1]] if key.size else np.zeros(0, bool)
    vmax = np.maximum.reduceat(v, np.flatnonzero(first)) if key.size else v
    vmin = v[first]  # sorted by value within a pair: the first is the smallest
    bad = ~(np.abs(vmax - vmin) <= SYM_RTOL * vmax)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        a, b = divmod(int(key[first][k]), base)
        raise ValueError(f"X: the sparse distance matrix is not symmetric: the edge ({a}, {b}) is stored with the "
                         f"values {vmin[k]} and {vmax[k]}")
    ukey = key[first]
    return SparseEdges(n, ukey // base, ukey % base, vmin, births)


def h0_with_births(edges: SparseEdges, threshold: float) -> np.ndarray:
    """The H0 diagram with the vertex birth times ``edges.births`` (ripser.py's rule), the
    readable reference of the mojo engine's H0 (``kernels/aura_kernels/persistence/h0.mojo``,
    which applies births itself) and the gudhi backend's H0 with births: edges <= threshold
    from the shortest; a merge kills the younger root (larger birth, ties: the larger root):
    bar ``[its birth, d)`` when ``d > birth``; ``[birth, inf)`` per component at the end.
    ``(k, 2)`` float64."""
    births = edges.births
    keep = edges.d <= threshold
    i, j, d = edges.i[keep], edges.j[keep], edges.d[keep].astype(np.float64)
    order = np.argsort(d, kind="stable")
    parent = np.arange(edges.n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    bars = []
    for u, v, dd in zip(i[order].tolist(), j[order].tolist(), d[order].tolist()):
        a, b = find(u), find(v)
        if a == b:
            continue
        if births[a] < births[b] or (births[a] == births[b] and a < b):
            a, b = b, a  # a: the younger root, which dies
        if dd > births[a]:
            bars.append((births[a], dd))
        parent[a] = b
    roots = [r for r in range(edges.n) if find(r) == r]
    bars += [(births[r], np.inf) for r in roots]
    return np.array(bars, np.float64).reshape(-1, 2)


def greedy_permutation(D_rows, n: int, n_perm: int) -> tuple[np.ndarray, float]:
    """Furthest-point sampling: ``n_perm`` indices (the first is 0, then each the point furthest
    from those chosen, ties to the smallest index) and the covering radius, the largest
    distance of any point to the chosen ones. ``D_rows(i)`` gives the ``(n,)`` distances from
    point i to all points."""
    idx = np.zeros(n_perm, np.int64)
    ds = np.asarray(D_rows(0), np.float64).copy()
    for k in range(1, n_perm):
        idx[k] = int(np.argmax(ds))
        np.minimum(ds, D_rows(int(idx[k])), out=ds)
    return idx, float(ds.max()) if n else 0.0
