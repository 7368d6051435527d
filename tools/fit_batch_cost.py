"""The measurements behind ``persistence.batch``'s cost model (``NS_PER_SIMPLEX``,
``NS_PER_INPUT``): the batched engine's CPU time per cloud on one thread, over cloud sizes and
maxdims, and the least-squares fit of ``ns = NS_PER_SIMPLEX[maxdim] * C(n, maxdim + 2) +
NS_PER_INPUT`` to it.

    PYTHONPATH=$PWD python tools/fit_batch_cost.py [--n 30,50,...] [--maxdim 0,1,2]

Clouds: the collection bench's noisy shapes in R^3 (``harness.collection.make_collection``,
seed 0, the four shapes in turn), per cell one ``rips_batch`` call on one thread over 8 to 64
clouds (as many as fill ~0.2 s, after a probe call on 8: the call's own Python overhead
spreads over them as over a long collection); the median of 3 calls of the process's CPU
time (all threads: it measures the work, not the wait for a core on a shared machine), per
cloud. Prints one
row per cell (measured, the model's estimate, their ratio) and the fitted constants.
"""

import argparse
import math
import statistics
import time

import numpy as np

from aura_lab.harness.collection import make_collection
from aura_lab.persistence import batch as B


def measure(n: int, maxdim: int) -> float:
    """Median CPU ns per cloud of one single-thread batched call."""
    X, _ = make_collection(8, n, seed=0)
    c0 = time.process_time()
    B.rips_batch(X, maxdim, np.inf, 2, False, threads=1)
    clouds = 4 * int(np.clip(0.05 / ((time.process_time() - c0) / 8), 2, 16))
    X, _ = make_collection(clouds, n, seed=0)
    times = []
    for _ in range(3):
        c0 = time.process_time()
        B.rips_batch(X, maxdim, np.inf, 2, False, threads=1)
        times.append((time.process_time() - c0) / clouds * 1e9)
    return statistics.median(times)


def fit(rows: list[tuple[int, int, float]]) -> tuple[dict[int, float], float]:
    """NS_PER_SIMPLEX per maxdim and one NS_PER_INPUT, least squares on relative error (each
    row weighted by 1 / its measurement, so that small clouds count as much as large ones)."""
    dims = sorted({k for _, k, _ in rows})
    A = np.zeros((len(rows), len(dims) + 1))
    for r, (n, k, ns) in enumerate(rows):
        A[r, dims.index(k)] = math.comb(n, k + 2) / ns
        A[r, -1] = 1.0 / ns
    coef, *_ = np.linalg.lstsq(A, np.ones(len(rows)), rcond=None)
    return {k: float(coef[i]) for i, k in enumerate(dims)}, float(coef[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="30,50,70,100,140,200,280,400")
    ap.add_argument("--maxdim", default="0,1,2")
    a = ap.parse_args()
    rows = [(n, k, measure(n, k)) for k in map(int, a.maxdim.split(",")) for n in map(int, a.n.split(","))]
    per_simplex, per_input = fit(rows)
    print(f"NS_PER_SIMPLEX = {{{', '.join(f'{k}: {v:.3g}' for k, v in per_simplex.items())}}}; "
          f"NS_PER_INPUT = {per_input:.3g}")
    print(f"{'maxdim':>6} {'n':>5} {'measured us':>12} {'fit us':>9} {'fit/meas':>8} {'old est/meas':>12}")
    for n, k, ns in rows:
        est = per_simplex[k] * math.comb(n, k + 2) + per_input
        print(f"{k:6d} {n:5d} {ns / 1e3:12.1f} {est / 1e3:9.1f} {est / ns:8.2f} {B.estimated_ns([n], k) / ns:12.2f}")


if __name__ == "__main__":
    main()
