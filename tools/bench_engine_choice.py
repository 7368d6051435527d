"""Dense vs sparse persistence engine over a grid of cloud sizes and graph densities: the
measurements behind ``persistence.kernels``' engine rule (``SPARSE_MIN_N``,
``SPARSE_MAX_DENSITY``).

    python tools/bench_engine_choice.py [--n 256,512,...] [--density 0.02,0.05,...] [--maxdim 1,2]
                                        [--cap SECONDS] > rows.jsonl

Clouds: n uniform points in the unit cube (seed 0, float32); the threshold is the distance
quantile that keeps the given fraction of the n (n - 1) / 2 pairs. Each cell runs
``rips_persistence(X, maxdim, threshold, backend="mojo", collapse_edges=False)`` with the
engine forced (``kernels._ENGINE``), after one warm-up call of each engine in the process:
the median of 3 runs (1 run once a run takes more than a second). Wall time includes what
each engine needs first (the full matrix for dense, the radius graph for sparse). A cell
whose slower engine took more than ``--cap`` seconds ends the densities above it for that
(n, maxdim). One JSON line per cell: n, maxdim, density, threshold, dense_s, sparse_s,
dense_over_sparse, and the bar counts (checked equal).
"""

import argparse
import json
import sys
import time

import numpy as np
from scipy.spatial.distance import pdist

from aura_lab import persistence as P
from aura_lab.persistence import kernels


def cloud(n: int) -> np.ndarray:
    return np.random.default_rng(0).random((n, 3)).astype(np.float32)


def timed(X, engine: str, maxdim: int, thr: float):
    old, kernels._ENGINE = kernels._ENGINE, engine
    try:
        times, out = [], None
        while len(times) < 3 and (not times or times[-1] < 1.0):
            t0 = time.perf_counter()
            out = P.rips_persistence(X, maxdim=maxdim, threshold=thr, backend="mojo", progress=False, collapse_edges=False)
            times.append(time.perf_counter() - t0)
        assert P.last_stats()["engine"] == engine
    finally:
        kernels._ENGINE = old
    return float(np.median(times)), [len(d) for d in out]


def main(argv) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="128,256,512,1024,2048,4096")
    ap.add_argument("--density", default="0.02,0.05,0.1,0.25,0.4,0.6")
    ap.add_argument("--maxdim", default="1,2")
    ap.add_argument("--cap", type=float, default=20.0)
    a = ap.parse_args(argv)
    warm = cloud(64)
    for engine in ("dense", "sparse"):
        timed(warm, engine, 2, 0.5)
    for maxdim in map(int, a.maxdim.split(",")):
        for n in map(int, a.n.split(",")):
            X = cloud(n)
            dists = np.sort(pdist(X.astype(np.float64)))
            for density in map(float, a.density.split(",")):
                thr = float(dists[max(0, int(density * dists.size) - 1)])
                td, bd = timed(X, "dense", maxdim, thr)
                ts, bs = timed(X, "sparse", maxdim, thr)
                assert bd == bs, (n, maxdim, density, bd, bs)
                print(json.dumps({"n": n, "maxdim": maxdim, "density": density, "threshold": round(thr, 5),
                                  "dense_s": round(td, 4), "sparse_s": round(ts, 4),
                                  "dense_over_sparse": round(td / ts, 2), "bars": bd}), flush=True)
                if max(td, ts) > a.cap:
                    break
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
