"""Radius-graph timings: aura_lab.neighbors.radius_graph (grid, tiles, auto) against scipy's
cKDTree (query_pairs + distances, and the same turned into CSR), one process, methods
interleaved per round, medians after a warm-up round.

    .venv/bin/python tools/bench_neighbors.py            # the three standard sets
    .venv/bin/python tools/bench_neighbors.py --rounds 7 --sets clifford
    .venv/bin/python tools/bench_neighbors.py --calibrate   # the cost-model shapes, 1 thread
    .venv/bin/python tools/bench_neighbors.py --json data/results/radius-graph.json

The docs' persistence page quotes the run stored with --json (``<!-- aura:neighbors -->``).

Sets: clifford (data/ph-benchmark/clifford_torus_50000, r = 0.15), cube (200 000 uniform
points in [0, 1]^3, seed 0, r = 0.05), o3 (data/ph-benchmark/o3_4096, r = 1.4).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from aura_lab import neighbors as N
from aura_lab.harness.core import machine_info

DATA = Path(__file__).resolve().parents[1] / "data" / "ph-benchmark"


def _sets():
    return {
        "clifford": (lambda: np.loadtxt(DATA / "clifford_torus_50000.points.txt"), 0.15),
        "cube": (lambda: np.random.default_rng(0).random((200_000, 3)), 0.05),
        "o3": (lambda: np.loadtxt(DATA / "o3_4096.txt"), 1.4),
    }


def _ckdtree(X, r):
    T = cKDTree(X)
    P = T.query_pairs(r, output_type="ndarray")
    d = np.sqrt(((X[P[:, 0]] - X[P[:, 1]]) ** 2).sum(axis=1))
    return P, d


def _ckdtree_csr(X, r):
    P, d = _ckdtree(X, r)
    return N.csr_from_pairs(X.shape[0], P[:, 0], P[:, 1], d)


def _time(fn, rounds):
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench(names, rounds: int, dtypes=("float64", "float32")) -> list[dict]:
    """Print each set's table; return a row per set, dtype and method (median ms, cKDTree's
    pairs+dist median over this one)."""
    sets, rows = _sets(), []
    for name in names:
        make, r = sets[name]
        X64 = make()
        for dt in dtypes:
            X = X64.astype(dt)
            methods = {
                "cKDTree pairs+dist": lambda: _ckdtree(X, r),
                "cKDTree -> CSR": lambda: _ckdtree_csr(X, r),
                "ours auto": lambda: N.radius_graph(X, r),
            }
            if X.shape[0] <= 20_000:  # n^2: minutes on the large sets
                methods["ours tiles"] = lambda: N.radius_graph(X, r, method="tiles")
            if X.shape[1] <= N.GRID_MAX_D:
                methods["ours grid"] = lambda: N.radius_graph(X, r, method="grid")
            for fn in methods.values():  # warm-up (kernel load, page faults)
                fn()
            times = {k: [] for k in methods}
            for _ in range(rounds):  # interleaved
                for k, fn in methods.items():
                    times[k] += _time(fn, 1)
            N.radius_graph(X, r)
            nnz = len(N.radius_graph(X, r)[1])
            base = statistics.median(times["cKDTree pairs+dist"])
            print(f"\n{name} n={X.shape[0]} d={X.shape[1]} {dt} r={r}: {nnz // 2} pairs; auto -> {N.last_path()}")
            for k, ts in times.items():
                med = statistics.median(ts)
                print(f"  {k:20s} median {med * 1e3:8.1f} ms  (min {min(ts) * 1e3:8.1f})  "
                      f"cKDTree/this {base / med:5.2f}x")
                rows.append({"set": name, "n": X.shape[0], "d": X.shape[1], "dtype": dt, "r": r, "pairs": nnz // 2,
                             "method": k, "median_ms": med * 1e3, "ckdtree_over_this": base / med})
    return rows


def calibrate(rounds: int):
    """Single-thread times of each path on a few shapes, against the cost model's estimate."""
    rng = np.random.default_rng(1)
    shapes = [(20000, 2, 0.01), (20000, 3, 0.05), (20000, 4, 0.15), (20000, 5, 0.3), (4000, 3, 0.3),
              (4000, 4, 0.6), (8000, 2, 0.2)]
    for n, d, r in shapes:
        X = rng.random((n, d))
        lay = N._grid_layout(X, r)
        est_g, est_t = N._estimate_grid_ns(lay), N._estimate_tiles_ns(n, d)
        tg = statistics.median(_time(lambda: N.radius_graph(X, r, threads=1, method="grid"), rounds))
        tt = statistics.median(_time(lambda: N.radius_graph(X, r, threads=1, method="tiles"), rounds))
        nnz = len(N.radius_graph(X, r, threads=1)[1])
        print(f"n={n} d={d} r={r}: nnz {nnz} cand {lay['candidates']:.3g} strips {lay['nstrips']}  grid {tg * 1e3:.1f} ms "
              f"(est {est_g * 1e-6:.1f})  tiles {tt * 1e3:.1f} ms (est {est_t * 1e-6:.1f})  model picks "
              f"{'grid' if est_g < est_t else 'tiles'}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--sets", default="clifford,cube,o3")
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--json", help="also write the rows here (the docs read data/results/radius-graph.json)")
    a = ap.parse_args()
    if a.calibrate:
        calibrate(a.rounds)
    else:
        rows = bench(a.sets.split(","), a.rounds, a.dtypes.split(","))
        if a.json:
            ctx = {"machine": machine_info(), "rounds": a.rounds, "load_after": os.getloadavg()[0],
                   "command": f"python tools/bench_neighbors.py --rounds {a.rounds} --sets {a.sets} --dtypes {a.dtypes}"}
            Path(a.json).write_text(json.dumps({"context": ctx, "rows": rows}, indent=2))
            print(f"wrote {a.json}")
