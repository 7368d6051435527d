"""The mojo engine's memory before it runs: simplex counts per dimension (exact where small,
else sampled with sure bounds), the peak they imply, and the refusal (``MemoryError`` before the
engine allocates anything) when even the sure lower bound exceeds the engine's budget."""

from __future__ import annotations

import math

import numpy as np

from .. import _arrays as A
from ..neighbors import csr_rows
from .problem import PersistenceProblem, _engine_dims


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
#: a clique-count subgraph with at most this many edges counts its triangles on Python ints,
#: a larger one on numpy arrays (``_triangles``; measured: ~1 us per edge against ~40 us per
#: numpy count at 30-120 edges, even at ~40 edges)
BITSET_MAX_EDGES = 48
#: set bits of each byte value
_POPCOUNT = np.array([bin(b).count("1") for b in range(256)], np.uint8)
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
    adjacency is U; None once ``calls[0]`` (the recursion budget) runs out. Up to triangles
    (kmax <= 3) a graph of more than ``BITSET_MAX_EDGES`` edges is counted on numpy arrays,
    else on bits (``_clique_counts_in``)."""
    edges = int(np.count_nonzero(U)) if kmax >= 2 else 0
    if kmax >= 4 or (kmax == 3 and 0 < edges <= BITSET_MAX_EDGES):
        packed = np.packbits(U, axis=1, bitorder="little")
        rows = [int.from_bytes(r.tobytes(), "little") for r in packed]  # row i: i's upper neighbours as bits
        return _clique_counts_in(U, rows, (1 << U.shape[0]) - 1, kmax, calls)
    c = np.array([1.0, U.shape[0], edges, 0.0][:kmax + 1])
    if kmax == 3 and edges:
        c[3] = _packed_triangles(U)
    return c


def _bits(x: int) -> list[int]:
    """The positions of the set bits of x, ascending."""
    out = []
    while x:
        low = x & -x
        out.append(low.bit_length() - 1)
        x ^= low
    return out


def _clique_counts_in(U: np.ndarray, rows: list[int], S: int, kmax: int, calls: list) -> np.ndarray | None:
    """``_clique_counts`` of the subgraph of U induced by the vertex set S (bits), ``rows`` U's
    rows as bits: each (k >= 4)-clique counted at its lowest vertex i, as a (k - 1)-clique among
    i's upper neighbours in S (one recursive call, charged to ``calls``). Sets are Python ints:
    a call costs a few bit operations per edge, where a numpy call costs ~10 us (a graph of
    50 points in 16-d at maxdim 7: ~3000 calls)."""
    verts = _bits(S)
    c = np.zeros(kmax + 1)
    c[0] = 1
    if kmax >= 1:
        c[1] = len(verts)
    if kmax >= 2:
        c[2] = sum((rows[u] & S).bit_count() for u in verts)
    if kmax >= 3 and c[2]:
        c[3] = _triangles(U, rows, S, verts, int(c[2]))
    if kmax >= 4 and c[3]:
        for i in verts:
            s = rows[i] & S
            if s.bit_count() < 3:
                continue
            calls[0] -= 1
            if calls[0] < 0:
                return None
            sub = _clique_counts_in(U, rows, s, kmax - 1, calls)
            if sub is None:
                return None
            c[4:] += sub[3:kmax]  # the j-cliques with lowest vertex i: (j - 1)-cliques among its upper neighbours
    return c


def _triangles(U: np.ndarray, rows: list[int], S: int, verts: list[int], edges: int) -> float:
    """The triangles of the subgraph of U induced by S: per edge u < w, the common upper
    neighbours of u and w; on Python ints up to ``BITSET_MAX_EDGES`` edges, else on numpy."""
    if edges <= BITSET_MAX_EDGES:
        return float(sum((rows[u] & rows[w] & S).bit_count() for u in verts for w in _bits(rows[u] & S)))
    return _packed_triangles(U if len(verts) == U.shape[0] else U[np.ix_(verts, verts)])


def _packed_triangles(U: np.ndarray) -> float:
    """The triangles of the graph of strictly upper-triangular adjacency U, on its packed rows
    (integer work only: no BLAS call, whose first use maps its code and buffers)."""
    packed = np.packbits(U, axis=1)
    u, w = np.nonzero(U)
    return float(_POPCOUNT[packed[u] & packed[w]].sum(dtype=np.int64))


def _csr_forward(n: int, indptr: np.ndarray, indices: np.ndarray):
    """Forward degrees (neighbours above each vertex) of a CSR graph and its upper-adjacency
    function: ``adjacent(nb)`` the strictly upper-triangular boolean adjacency among the
    ascending vertices nb."""
    deg = np.diff(indptr)
    rows = csr_rows(indptr)
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


def _sample(cand: np.ndarray, dplus: np.ndarray, seed: int) -> np.ndarray:
    """The vertices whose cliques ``simplex_counts`` counts: a random order of the candidates
    ``cand``, cut where their (capped) forward degrees squared reach ``ESTIMATE_WORK`` (at least
    32, at most ``ESTIMATE_MAX_SAMPLE`` vertices). All of them, in their own order and without
    drawing one, when all fit and none is subsampled: the counts are then the same in any order."""
    cost = np.minimum(dplus, ESTIMATE_MAX_LOCAL).astype(np.float64) ** 2
    fits = cand.size <= 32 or (cand.size <= ESTIMATE_MAX_SAMPLE and cost[cand].sum() <= ESTIMATE_WORK)
    if fits and (cand.size == 0 or dplus[cand].max() <= ESTIMATE_MAX_LOCAL):
        return cand
    order = np.random.default_rng(seed).permutation(cand)
    cut = int(np.searchsorted(np.cumsum(cost[order]), ESTIMATE_WORK, side="right"))
    return order[:max(min(cand.size, 32), min(cut, ESTIMATE_MAX_SAMPLE))]


def _upper_counts(n: int, maxdim: int, dplus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(upper, W): sure upper bounds of the k-simplex counts, k = 0..maxdim (the vertices, the
    edges, then sum over v of C(|N+(v)|, k): every k-subset of a forward neighbourhood a
    simplex), and W = ``_binom_rows(dplus, maxdim)``."""
    W = _binom_rows(dplus, maxdim)
    upper = np.zeros(maxdim + 1)
    upper[0] = n
    if maxdim >= 1:
        upper[1] = float(dplus.sum())
    if maxdim >= 2:
        upper[2:] = W[2:].sum(axis=1)
    return upper, W


def simplex_counts(n: int, maxdim: int, dplus: np.ndarray, forward, adjacent, seed: int = 0, *,
                   bounds: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
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
    so this tends to overestimate); their lower bound is 0. ``bounds``: ``_upper_counts(n,
    maxdim, dplus)`` when the caller has it already."""
    maxdim = max(0, int(maxdim))
    upper, W = _upper_counts(n, maxdim, dplus) if bounds is None else bounds
    lower, est, exact = upper.copy(), upper.copy(), [True] * (maxdim + 1)
    if maxdim >= 2:
        cand = np.flatnonzero(dplus >= 2)
        take = _sample(cand, dplus, seed)
        subsampled = False

        def count(kc: int):
            """(found, scaled) over the sample for dimensions <= kc, or None (budget spent)."""
            nonlocal subsampled
            rng, calls = None, [ESTIMATE_MAX_CALLS]
            found = np.zeros(maxdim + 1)  # the cliques found: a lower bound
            scaled = np.zeros(maxdim + 1)  # each vertex's count scaled to its whole neighbourhood
            for v in take:
                nb = forward(int(v))
                d = nb.size
                if d > ESTIMATE_MAX_LOCAL:
                    rng = np.random.default_rng(seed + 1) if rng is None else rng
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
                          itemsize: int = 4, D: np.ndarray | None = None, thr: float = np.inf, *,
                          budget: int | None = None) -> dict:
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
    known only after the fact).

    ``budget``: when given and the sure lower bound could not exceed it even at the sure upper
    bounds of the counts, no clique is counted (on o3_1024 at maxdim 3 the counting is about
    half of the call): ``simplices`` then holds those upper bounds as estimates, the found
    cliques (none) as lower bounds and ``exact`` False from dimension 2 on, and ``counted`` is
    False (else True)."""
    maxdim = max(0, int(maxdim))
    if D is not None:
        dplus, forward, adjacent = _dense_forward(D, thr)
        input_bytes = D.nbytes
    else:
        dplus, forward, adjacent = _csr_forward(n, indptr, indices)
        input_bytes = indptr.nbytes + indices.nbytes + int(indptr[-1]) * itemsize
    kmax = max(maxdim, 1)
    bounds = _upper_counts(n, kmax, dplus)
    upper = bounds[0]
    counted = budget is None or _engine_bytes(n, maxdim, upper.tolist(), None, 1.0) > budget
    if counted:
        counts = simplex_counts(n, kmax, dplus, forward, adjacent, bounds=bounds)
    else:
        low = [float(c) if k < 2 else 0.0 for k, c in enumerate(upper)]
        counts = {"estimate": upper.tolist(), "lower": low, "upper": upper.tolist(),
                  "exact": [k < 2 for k in range(kmax + 1)]}
    est, low = counts["estimate"], counts["lower"]
    columns = [0.0, float(est[1])] + [COLUMN_FRACTION * c for c in est[2:]]
    if maxdim >= 1:
        columns[1] = max(0.0, est[1] - (n - 1)) * COLUMN_FRACTION  # edges that merge nothing, few of them columns
    return {"simplices": counts, "counted": counted, "input_bytes": int(input_bytes),
            "estimate_bytes": int(_engine_bytes(n, maxdim, est, columns, GROWTH_SLACK)),
            "lower_bytes": int(_engine_bytes(n, maxdim, low, None, 1.0))}


def _check_engine_memory(prob: PersistenceProblem, engine: str, thr: float, n: int | None = None, **graph) -> dict:
    """``estimate_engine_bytes`` of the run about to start; ``MemoryError`` (before the engine
    allocates anything) when its ``lower_bytes`` exceed the engine's budget.

    The refusal rule: only the sure lower bound refuses. It counts what the engine must hold
    whatever the reduction does (the edge list; with maxdim >= 3 the simplices of dimensions
    2..maxdim-1 that the assembly lists, from cliques actually found), and the engine takes
    these bytes through the same budget, so a refused problem would have stopped with status 1
    anyway, only later. The estimate (columns, extrapolated and sampled counts) may be above
    or below the peak, so it never refuses on its own; a problem between the lower bound and
    the budget runs, and the engine's own budget still stops it without an OOM kill. Where
    even the counts' upper bounds keep the lower bound within the budget, no clique is counted
    (``estimate_engine_bytes``'s ``budget``)."""
    n = prob.n if n is None else n  # the vertices the engine gets (sparse: those with an edge)
    dims = _engine_dims(n, prob.maxdim)
    budget = _engine_budget()
    est = estimate_engine_bytes(n, dims, thr=thr, budget=budget, **graph)
    est["budget_bytes"] = budget
    if est["lower_bytes"] > budget:
        low = est["simplices"]["lower"]
        # the first stage past the budget: building the simplex list of dimension m - 1 (0: the edges)
        m = next(m for m in range(dims + 1) if _engine_bytes(n, m, low, None, 1.0) > budget)
        shown = ", ".join(f"{c:.3g}" for c in low[:dims + 1])
        raise MemoryError(
            f"rips_persistence: the Rips complex of n={n} points up to dimension {prob.reported_maxdim} at threshold "
            f"{thr:g} needs at least {A.fmt_bytes(est['lower_bytes'])} in the {engine} engine (estimate "
            f"{A.fmt_bytes(est['estimate_bytes'])}; at least {shown} simplices per dimension), more than its "
            f"{A.fmt_bytes(budget)} memory budget ({BUDGET_FRACTION:.0%} of available memory): building dimension "
            f"{max(0, m - 1)} asked for at least {A.fmt_bytes(_engine_bytes(n, m, low, None, 1.0))}, refused before "
            f"the engine ran; lower maxdim or the threshold")
    return est
