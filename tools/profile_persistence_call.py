"""Where one small ``rips_persistence`` call goes: the engine's own per-dimension seconds
(``last_stats()``) and a cProfile of the Python around it, on a noisy circle of n points.

    PYTHONPATH=$PWD python tools/profile_persistence_call.py [n ...]     # default 70 200
"""

import cProfile
import io
import pstats
import sys
import time

import numpy as np

from aura_lab import rips_persistence
from aura_lab.persistence import last_stats


def noisy_circle(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, n)
    return np.stack([np.cos(t), np.sin(t)], 1) + 0.1 * rng.normal(size=(n, 2))


def main(sizes) -> None:
    for n in sizes:
        X = noisy_circle(n)
        for _ in range(20):
            rips_persistence(X)
        reps = max(50, 100_000 // n)
        per = []
        t0 = time.perf_counter()
        for _ in range(reps):
            rips_persistence(X)
            s = last_stats()
            per.append(s["seconds"][:2])
        total = (time.perf_counter() - t0) / reps
        h0, h1 = np.median(np.array(per), axis=0)
        print(f"n={n}: {total * 1e6:.0f} us per call; engine H0 (edges, sort, union-find) {h0 * 1e6:.0f} us, "
              f"H1 (assembly, search, reduction) {h1 * 1e6:.0f} us; Python and distances the rest")
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(reps):
            rips_persistence(X)
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(30)
        print(out.getvalue())


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [70, 200])
