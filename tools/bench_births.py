"""Vertex births in the engine's H0 against the former path (the engine, then the Python
union-find ``inputs.h0_with_births`` over every edge), in one process.

    python tools/bench_births.py [N_EDGES] [REPEATS]

The input: a random geometric graph in the unit square (seed 0) with about N_EDGES edges
(default 200 000) as a ``scipy.sparse`` matrix whose diagonal holds vertex births (uniform in
[0, r/2), r the radius), maxdim 1. "engine": ``rips_persistence`` on it (births in h0.mojo);
"former": ``rips_persistence`` on the same matrix without its diagonal plus
``h0_with_births`` on the validated edges, which is what the production path ran before.
Prints one JSON line: medians after a warm-up, their ratio, and whether both H0 agree.
"""

import json
import sys
import time

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from aura_lab import persistence as P
from aura_lab.persistence import inputs as G
from aura_lab.persistence import problem


def graph(n_edges: int):
    n = int(np.sqrt(n_edges) * 45)  # mean degree ~ 2 n_edges / n: about 10 for 200k edges
    r = float(np.sqrt(2 * n_edges / (np.pi * n * n)))
    X = np.random.default_rng(0).random((n, 2))
    M = cKDTree(X).sparse_distance_matrix(cKDTree(X), r, output_type="coo_matrix")
    keep = M.row < M.col
    births = np.random.default_rng(1).random(n) * r / 2
    row, col = np.r_[M.row[keep], np.arange(n)], np.r_[M.col[keep], np.arange(n)]
    with_births = sp.coo_matrix((np.r_[M.data[keep], births], (row, col)), shape=(n, n))
    without = sp.coo_matrix((M.data[keep], (M.row[keep], M.col[keep])), shape=(n, n))
    return with_births, without, int(keep.sum())


def median_s(f, repeats: int):
    f()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def main(argv) -> int:
    n_edges = int(argv[0]) if argv else 200_000
    repeats = int(argv[1]) if len(argv) > 1 else 5
    M, M0, m = graph(n_edges)
    kw = dict(maxdim=1, distance_matrix=True, backend="mojo", progress=False)

    def engine():
        return P.rips_persistence(M, **kw)[0]

    E = problem._validate(M, 0, np.inf, "euclidean", True, 2).X  # (validated inside rips_persistence before)

    def former():
        P.rips_persistence(M0, **kw)
        return P.result._finish([G.h0_with_births(E, problem._edges_threshold(E, np.inf))], 0)[0]

    t_new, h0_new = median_s(engine, repeats)
    t_old, h0_old = median_s(former, repeats)
    print(json.dumps({"n": M.shape[0], "edges": m, "maxdim": 1, "engine_s": round(t_new, 4), "former_s": round(t_old, 4),
                      "former_over_engine": round(t_old / t_new, 2), "h0_bars": len(h0_new),
                      "h0_equal": bool(np.array_equal(h0_new, h0_old)), "engine": P.last_stats()["engine"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
